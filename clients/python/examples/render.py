"""Render one picture with a paints-undo service, showing its progress, and save the video and keyframes.

PAINTS_UNDO_API_KEY=... python clients/python/examples/render.py picture.png --url http://127.0.0.1:8000
"""

import argparse
import json
import os
import sys

from paints_undo_client import Client, JobError, ProgressEvent


def show(event: ProgressEvent) -> None:
    if event.type == "stage.started":
        print(f"{event.progress:4.0%}  {event.stage}")
    elif event.type == "job.prompt":
        print(f"      prompt: {event.prompt}")
    elif event.type == "job.keyframe":
        print(f"      keyframe {event.index}: undo step {event.undo_step}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("image", help="the finished picture: PNG, JPEG or WebP")
    parser.add_argument("--url", default=os.environ.get("PAINTS_UNDO_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--settings", type=json.loads, help="RenderSettings as JSON, e.g. '{\"fps\": 8}'")
    parser.add_argument("--out", default="drawing", help="folder for the files (default: drawing)")
    args = parser.parse_args()

    with Client(args.url) as client:  # the key comes from PAINTS_UNDO_API_KEY
        job = client.submit(args.image, settings=args.settings)
        print(f"job {job.id}: {job.status}")
        try:
            job = client.wait(job, on_progress=show)
        except JobError as err:  # failed (err.code says why) or canceled
            sys.exit(str(err))
        print(f"done: {job.video.frames} frames at {job.video.fps} fps" if job.video else "done: keyframes only")
        for path in client.download(job, args.out):
            print(f"saved {path}")


if __name__ == "__main__":
    main()
