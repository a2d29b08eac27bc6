// The playground: a page over the job API, served at / by api/routes/playground.py.
//
// Every request carries the visitor's key as `Authorization: Bearer`; the key stays in this tab's session
// storage. The settings form is generated from /openapi.json's RenderSettings, and only the fields changed
// from their defaults are sent. The event stream is read with fetch() (EventSource cannot send the header)
// and resumed with Last-Event-ID when the connection drops. URLs are relative, so the page also works under
// a proxy's path prefix.
//
// Two phases: a job made with stop_after "keyframes" ends with keyframes and no video; the visitor checks the
// ones to keep, and the page sends them back with the same picture as the next job's own keyframes.
"use strict";

const KEY_STORAGE = "paints-undo.api-key";
const RECENT_JOBS = 10;
const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
const STAGES = {
  tagging: "Reading the picture",
  keyframes: "Drawing keyframes",
  interpolation: "Making the clips between them",
  encoding: "Encoding the video",
};
const RETRY_SECONDS = [1, 2, 4, 8, 15];
const MAX_KEYFRAMES = 20; // the API's limit on supplied keyframes
// The settings that mean nothing with the visitor's own keyframes: the form leaves them out then.
const NOT_WITH_OWN_KEYFRAMES = ["undo_steps", "stop_after"];

const $ = (id) => document.getElementById(id);

function element(tag, properties = {}, ...children) {
  const node = Object.assign(document.createElement(tag), properties);
  node.append(...children);
  return node;
}

// --- The API --------------------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, options = {}) {
  const headers = { ...options.headers, Authorization: `Bearer ${$("api-key").value.trim()}` };
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network_error", "The API did not answer; check your connection and try again.");
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

async function errorOf(response) {
  try {
    const { error } = await response.json();
    return new ApiError(response.status, error.code, error.message);
  } catch {
    return new ApiError(response.status, `http_${response.status}`, `The API answered ${response.status}.`);
  }
}

function showError(error) {
  $("error-code").textContent = error.code || "";
  $("error-message").textContent = error.message;
  $("error").hidden = false;
  $("error").scrollIntoView({ block: "nearest" });
}

function clearError() {
  $("error").hidden = true;
}

// --- The API key ----------------------------------------------------------------------------------------------------

function setUpKey() {
  const input = $("api-key");
  input.value = sessionStorage.getItem(KEY_STORAGE) || "";
  input.addEventListener("change", () => {
    sessionStorage.setItem(KEY_STORAGE, input.value.trim());
    clearError();
    loadRecent();
  });
  $("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
    input.value = "";
    loadRecent();
  });
}

// --- The picture ----------------------------------------------------------------------------------------------------

const pictures = new Map(); // job id -> the File it was made from, while the page lives: for its second phase
let pictureWanted = null; // the id of a job whose picture the page asked for again

function setUpPicture() {
  const input = $("picture");
  input.addEventListener("change", showPicture);
  dropZone($("drop"), (files) => {
    input.files = files;
    showPicture();
  });
}

// Files dragged from another window and dropped on `drop` go to onFiles(FileList).
function dropZone(drop, onFiles) {
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) onFiles(event.dataTransfer.files);
  });
}

function showPicture() {
  const file = $("picture").files[0];
  const preview = $("picture-preview");
  URL.revokeObjectURL(preview.src);
  preview.hidden = !file;
  if (file) preview.src = URL.createObjectURL(file);
  $("picture-text").textContent = file ? `${file.name} · ${formatBytes(file.size)} · drop another to change it` : "";
  if (file && pictureWanted) {
    pictures.set(pictureWanted, file);
    pictureWanted = null;
    clearError();
  }
}

// --- The visitor's own keyframes ------------------------------------------------------------------------------------

let ownKeyframes = []; // [{ file, url }], in the order they are sent: earliest state first
const ownTextEmpty = "Drop earlier states of this picture here, or ";

function setUpOwnKeyframes() {
  const input = $("own-keyframes");
  input.addEventListener("change", () => {
    addOwnKeyframes(input.files);
    input.value = ""; // so that the same file can be chosen again after removing it
  });
  dropZone($("own-drop"), addOwnKeyframes);
  $("own-sort").addEventListener("click", () => {
    const collator = new Intl.Collator(undefined, { numeric: true }); // step2.png before step10.png
    ownKeyframes.sort((a, b) => collator.compare(a.file.name, b.file.name));
    showOwnKeyframes();
  });
  $("own-clear").addEventListener("click", () => removeOwnKeyframes(ownKeyframes));
}

function addOwnKeyframes(files) {
  clearError();
  const room = MAX_KEYFRAMES - ownKeyframes.length;
  const added = [...files].slice(0, Math.max(0, room));
  ownKeyframes.push(...added.map((file) => ({ file, url: URL.createObjectURL(file) })));
  if (files.length > added.length) {
    const message = `At most ${MAX_KEYFRAMES} keyframes; ${files.length - added.length} of the files were left out.`;
    showError(new ApiError(0, "too_many_keyframes", message));
  }
  showOwnKeyframes();
}

function removeOwnKeyframes(removed) {
  removed.forEach((keyframe) => URL.revokeObjectURL(keyframe.url));
  ownKeyframes = ownKeyframes.filter((keyframe) => !removed.includes(keyframe));
  showOwnKeyframes();
}

function showOwnKeyframes() {
  const count = ownKeyframes.length;
  $("own-list").replaceChildren(
    ...ownKeyframes.map((keyframe, i) => {
      const { name } = keyframe.file;
      const remove = element("button", { type: "button", className: "remove", textContent: "×" });
      remove.title = `Remove ${name}`;
      remove.setAttribute("aria-label", `Remove ${name}`);
      remove.addEventListener("click", () => removeOwnKeyframes([keyframe]));
      const image = element("img", { src: keyframe.url, alt: `Your keyframe ${i + 1}, ${name}` });
      return element("li", { title: name }, image, element("span", { textContent: `${i + 1}` }), remove);
    }),
  );
  $("own-list").hidden = count === 0;
  $("own-tools").hidden = count === 0;
  const plural = count === 1 ? "keyframe" : "keyframes";
  if (count) $("own-text").textContent = `${count} ${plural}, earliest first · drop or choose more`;
  else $("own-text").replaceChildren(ownTextEmpty, element("u", { textContent: "choose files" }));
  settingsForOwnKeyframes();
}

// With own keyframes, the settings of the keyframe model are turned off (and not sent).
function settingsForOwnKeyframes() {
  const reason = ownKeyframes.length ? "Not used with your own keyframes." : null;
  fields.filter((field) => NOT_WITH_OWN_KEYFRAMES.includes(field.name)).forEach((field) => field.turnOff(reason));
}

// --- The settings form, from the OpenAPI document -------------------------------------------------------------------

let fields = [];

async function setUpSettings() {
  const openapi = await (await fetch("openapi.json")).json();
  const schemas = openapi.components.schemas;
  const resolve = (schema) => (schema.$ref ? schemas[schema.$ref.split("/").pop()] : schema);
  const settings = schemas.RenderSettings;
  fields = Object.entries(settings.properties).map(([name, schema]) => settingField(name, schema, resolve));
  $("settings-fields").replaceChildren(...fields.map((field) => field.node));
  $("reset-settings").addEventListener("click", () => fields.forEach((field) => field.reset()));
  settingsForOwnKeyframes();
  $("submit").disabled = false;
}

// A schema's alternatives: constant values (const, enum, null) and value schemas (a number, a string, a list...).
function alternatives(schema, resolve) {
  const choices = [];
  const values = [];
  for (const option of (schema.anyOf || schema.oneOf || [schema]).map(resolve)) {
    if ("const" in option) choices.push(option.const);
    else if (option.enum) choices.push(...option.enum);
    else if (option.type === "null") choices.push(null);
    else values.push(option);
  }
  return { choices, values };
}

// One form field: { name, node, fallback (its default), value() -> the setting's value, reset(), turnOff(reason),
// off() }. A field turned off is disabled, shows the reason instead of its hint, and is not sent.
// The browser enforces the ranges: min, max and step on numbers, a custom validity on lists.
function settingField(name, schema, resolve) {
  const { choices, values } = alternatives(resolve(schema), resolve);
  const control =
    values.length === 0
      ? choiceControl(choices)
      : values.length === 1 && choices.length <= 1
        ? valueControl(values[0], resolve, choices, schema.examples?.[0])
        : jsonControl();
  control.input.id = `setting-${name}`;
  control.input.name = name;
  const fallback = schema.default;
  const reset = () => control.write(fallback);
  reset();

  const labelable = control.input.matches("input, select, textarea");
  const label = element(labelable ? "label" : "span", { className: "label", textContent: schema.title || name });
  if (labelable) label.htmlFor = control.input.id;
  const range = rangeOf(values[0] || {}, resolve);
  if (range) label.append(" ", element("span", { className: "range", textContent: range }));
  const hint = element("p", { className: "hint", textContent: firstSentence(schema.description || "") });
  hint.title = schema.description || "";
  const node = element("div", { className: control.wide ? "setting wide" : "setting" }, label, control.node, hint);
  const turnOff = (reason) => {
    for (const input of [control.input, ...control.node.querySelectorAll("input, select, textarea")]) {
      input.disabled = Boolean(reason);
    }
    hint.textContent = reason || firstSentence(schema.description || "");
    node.classList.toggle("off", Boolean(reason));
  };
  const off = () => node.classList.contains("off");
  return { name, node, fallback, value: control.read, reset, turnOff, off };
}

// "1–100" for a number, "0–999 each" for a list of numbers; "" when unbounded.
function rangeOf(schema, resolve) {
  if (schema.type === "array") {
    const each = rangeOf(resolve(schema.items || {}), resolve);
    return each && `${each} each`;
  }
  return "minimum" in schema && "maximum" in schema ? `${schema.minimum}–${schema.maximum}` : "";
}

function firstSentence(text) {
  const end = text.search(/\.(\s|$)/);
  return end < 0 ? text : text.slice(0, end + 1);
}

// A setting with only constant values: a select.
function choiceControl(choices) {
  const input = element(
    "select",
    {},
    ...choices.map((choice) => element("option", { value: JSON.stringify(choice), textContent: choice ?? "none" })),
  );
  return {
    input,
    node: input,
    read: () => JSON.parse(input.value),
    write: (choice) => (input.value = JSON.stringify(choice)),
  };
}

// A setting with one kind of value, and at most one constant ("auto", null) that an empty input stands for;
// the placeholder shows that constant, or for null the schema's example.
function valueControl(schema, resolve, choices, example) {
  if (schema.type === "boolean") return booleanControl();
  const empty = choices.length ? choices[0] : undefined;
  const control =
    schema.type === "array"
      ? listControl(schema, resolve)
      : schema.type === "integer" || schema.type === "number"
        ? numberControl(schema)
        : textControl(schema);
  if (empty === undefined) {
    control.input.required = schema.type === "integer" || schema.type === "number";
    return control;
  }
  const placeholder = empty === null ? example : empty;
  if (placeholder != null) {
    control.input.placeholder = Array.isArray(placeholder) ? placeholder.join(", ") : placeholder;
  }
  return {
    ...control,
    read: () => (control.input.value.trim() === "" ? empty : control.read()),
    write: (value) => (value === empty ? (control.input.value = "") : control.write(value)),
  };
}

function numberControl(schema) {
  const input = element("input", { type: "number", inputMode: schema.type === "integer" ? "numeric" : "decimal" });
  if ("minimum" in schema) input.min = schema.minimum;
  if ("maximum" in schema) input.max = schema.maximum;
  input.step = schema.multipleOf || (schema.type === "integer" ? 1 : "any");
  return { input, node: input, read: () => Number(input.value), write: (value) => (input.value = value) };
}

function textControl(schema) {
  const long = (schema.maxLength || 0) > 200;
  const input = element(long ? "textarea" : "input", long ? { rows: 2 } : { type: "text" });
  if (schema.maxLength) input.maxLength = schema.maxLength;
  return { input, node: input, wide: long, read: () => input.value, write: (value) => (input.value = value) };
}

function booleanControl() {
  const input = element("input", { type: "checkbox" });
  return { input, node: input, read: () => input.checked, write: (value) => (input.checked = value) };
}

// A list: checkboxes when its items are constants, else comma-separated values checked against the schema.
function listControl(schema, resolve) {
  const items = resolve(schema.items || {});
  const { choices } = alternatives(items, resolve);
  if (choices.length) return checkboxesControl(choices);
  const input = element("input", { type: "text", spellcheck: false });
  const parse = () =>
    input.value
      .split(/[\s,]+/)
      .filter(Boolean)
      .map((text) => (items.type === "integer" || items.type === "number" ? Number(text) : text));
  input.addEventListener("input", () => input.setCustomValidity(listProblem(parse(), schema, items)));
  return {
    input,
    node: input,
    read: parse,
    write: (list) => {
      input.value = list.join(", ");
      input.setCustomValidity("");
    },
  };
}

function listProblem(list, schema, items) {
  const { minItems = 0, maxItems = Infinity } = schema;
  if (list.length < minItems || list.length > maxItems) {
    const count = maxItems === Infinity ? `${minItems} or more` : `${minItems} to ${maxItems}`;
    return `Give ${count} values, separated by commas.`;
  }
  if (items.type !== "integer" && items.type !== "number") return "";
  const { minimum = -Infinity, maximum = Infinity } = items;
  const whole = items.type === "integer";
  const fits = (item) => Number.isFinite(item) && item >= minimum && item <= maximum && (!whole || item % 1 === 0);
  if (list.every(fits)) return "";
  return `Each value must be ${whole ? "a whole number" : "a number"} from ${minimum} to ${maximum}.`;
}

function checkboxesControl(choices) {
  const boxes = choices.map((choice) => element("input", { type: "checkbox", value: JSON.stringify(choice) }));
  const node = element(
    "div",
    { className: "checkboxes" },
    ...boxes.map((box, i) => element("label", {}, box, ` ${choices[i]}`)),
  );
  return {
    input: node,
    node,
    read: () => boxes.filter((box) => box.checked).map((box) => JSON.parse(box.value)),
    write: (list) => boxes.forEach((box) => (box.checked = list.some((item) => JSON.stringify(item) === box.value))),
  };
}

// Anything else the schema may hold, as JSON text.
function jsonControl() {
  const input = element("input", { type: "text", spellcheck: false, placeholder: "JSON" });
  input.addEventListener("input", () => {
    try {
      JSON.parse(input.value);
      input.setCustomValidity("");
    } catch {
      input.setCustomValidity("Write the value as JSON.");
    }
  });
  const write = (value) => (input.value = JSON.stringify(value));
  return { input, node: input, read: () => JSON.parse(input.value), write };
}

// The settings that differ from their defaults (leaving out the fields turned off).
function changedSettings() {
  const settings = {};
  for (const field of fields) {
    if (field.off()) continue;
    const value = field.value();
    if (JSON.stringify(value) !== JSON.stringify(field.fallback)) settings[field.name] = value;
  }
  return settings;
}

// --- Submitting -----------------------------------------------------------------------------------------------------

function setUpSubmit() {
  $("job-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    const picture = $("picture").files[0];
    const body = new FormData();
    body.append("image", picture);
    ownKeyframes.forEach(({ file }) => body.append("keyframe", file));
    const settings = changedSettings();
    if (Object.keys(settings).length) body.append("settings", JSON.stringify(settings));
    $("submit").disabled = true;
    try {
      const job = await (await api("v1/jobs", { method: "POST", body })).json();
      pictures.set(job.id, picture);
      openJob(job);
      loadRecent();
    } catch (error) {
      showError(error);
    } finally {
      $("submit").disabled = false;
    }
  });
}

// --- One job: its state, its events ---------------------------------------------------------------------------------

let following = null; // the AbortController of the event stream being read
let shown = {}; // the job shown: status, cancel_requested, progress, eta_seconds, stage, step, total, queue_position
let shownJob = null; // the job shown, as the API last gave it whole

function openJob(job) {
  following?.abort();
  following = new AbortController();
  shown = {};
  $("job-id").textContent = job.id;
  $("keyframes").replaceChildren();
  $("keyframes-title").hidden = true;
  $("pick").hidden = true;
  $("downloads").replaceChildren();
  $("video").removeAttribute("src");
  $("result").hidden = true;
  $("job-failure").hidden = true;
  $("job-prompt").hidden = true;
  $("job-empty").hidden = true;
  $("job").hidden = false;
  $("job-panel").scrollIntoView({ block: "nearest" });
  showJob(job);
  if (!TERMINAL.has(job.status)) follow(job.id, following.signal);
}

function showJob(job) {
  shownJob = job;
  const { status, cancel_requested, progress, eta_seconds, stage, queue_position } = job;
  update({ status, cancel_requested, progress, eta_seconds, stage, queue_position, step: null, total: null });
  if (job.prompt) setPrompt(job.prompt);
  job.keyframes.forEach(addKeyframe);
  if (job.status === "succeeded") showResult(job);
  if (job.status === "succeeded" && job.settings?.stop_after === "keyframes") offerKeyframes();
  if (job.error) {
    $("job-failure").textContent = `${job.error.code}: ${job.error.message}`;
    $("job-failure").hidden = false;
  }
}

function update(changes) {
  shown = { ...shown, ...changes };
  const { status, progress } = shown;
  const finished = TERMINAL.has(status);
  const canceling = shown.cancel_requested && !finished;
  $("job-status").textContent = canceling ? "canceling" : status;
  $("job-status").dataset.status = status;
  $("cancel").hidden = finished;
  $("cancel").disabled = canceling;
  $("job-progress").value = progress;
  $("job-detail").textContent = describe(shown);
}

function describe({ status, progress, eta_seconds, stage, step, total, queue_position }) {
  const percent = `${Math.floor(progress * 100)}%`;
  if (status === "queued") return `Waiting in the queue${queue_position ? ` (position ${queue_position})` : ""}`;
  if (status === "succeeded") return "Done";
  if (status === "canceled") return `Canceled at ${percent}`;
  if (status !== "running") return "";
  const parts = [STAGES[stage] || stage || "Starting", percent];
  if (step != null && total) parts.push(`step ${step} of ${total}`);
  if (eta_seconds != null) parts.push(`about ${formatSeconds(eta_seconds)} left`);
  return parts.join(" · ");
}

function setPrompt(prompt) {
  $("job-prompt").replaceChildren(element("span", { className: "muted", textContent: "Prompt " }), prompt);
  $("job-prompt").hidden = false;
}

function addKeyframe(keyframe) {
  const list = $("keyframes");
  if (list.querySelector(`[data-index="${keyframe.index}"]`)) return; // shown already: keep its picture
  const alt = `Keyframe ${keyframe.index + 1}, ${keyframe.undo_step} steps back`;
  const image = element("img", { src: keyframe.url, alt });
  const item = element(
    "li",
    {},
    element("a", { href: keyframe.url, target: "_blank", rel: "noopener" }, image),
    element("span", { className: "hint", textContent: `${keyframe.undo_step} steps back` }),
  );
  item.dataset.index = keyframe.index;
  item.dataset.undoStep = keyframe.undo_step;
  // From the blankest canvas to the finished picture, as the video runs.
  const after = [...list.children].find((other) => Number(other.dataset.undoStep) < keyframe.undo_step);
  list.insertBefore(item, after || null);
  $("keyframes-title").hidden = false;
}

// The job's files: its outputs, or (from a server without them) its video.
function outputsOf(job) {
  if (job.outputs?.length) return job.outputs;
  return job.video ? [{ kind: "video", url: job.video.url, media_type: "video/mp4" }] : [];
}

// The video and the download links.
function showResult(job) {
  const outputs = outputsOf(job);
  const video = outputs.find((output) => output.kind === "video");
  $("video").hidden = !video;
  if (video) $("video").src = video.url;
  $("downloads").replaceChildren(
    ...outputs.map((output) => {
      const size = output.bytes ? `, ${formatBytes(output.bytes)}` : "";
      const text = `Download ${output.kind} (${output.media_type.split("/").pop().toUpperCase()}${size})`;
      return element("li", {}, element("a", { href: output.url, download: "", textContent: text }));
    }),
  );
  if (job.video) {
    const { width, height, frames, fps } = job.video;
    const about = `${width}×${height}, ${frames} frames at ${fps} fps (${formatSeconds(frames / fps)})`;
    $("downloads").append(element("li", { className: "muted", textContent: about }));
  }
  if (job.supplied_keyframes) {
    const through = `through ${job.supplied_keyframes} of your own keyframes`;
    $("downloads").append(element("li", { className: "muted", textContent: through }));
  }
  $("result").hidden = outputs.length === 0;
}

// --- The second phase: a video through the keyframes the visitor keeps ----------------------------------------------

// A job that stopped after its keyframes: a checkbox on each, and the button that makes the video through them.
function offerKeyframes() {
  for (const item of $("keyframes").children) {
    if (item.querySelector("input")) continue;
    const box = element("input", { type: "checkbox" });
    box.setAttribute("aria-label", `Keep the keyframe ${item.dataset.undoStep} steps back`);
    box.addEventListener("change", updatePick);
    const caption = item.querySelector(".hint");
    item.replaceChild(element("label", { className: "hint keep" }, box, ` ${caption.textContent}`), caption);
  }
  $("pick").hidden = false;
  updatePick();
}

function updatePick() {
  $("make-video").disabled = !$("keyframes").querySelector("input:checked");
}

function setUpPick() {
  $("make-video").addEventListener("click", async () => {
    clearError();
    const job = shownJob;
    const picture = pictures.get(job.id);
    if (!picture) {
      pictureWanted = job.id;
      const message =
        `This page no longer has the picture job ${job.id} was made from (it was reloaded, or the job was made ` +
        "elsewhere). Choose that picture again under Picture, then press “Make the video from the chosen " +
        "keyframes” again.";
      return showError(new ApiError(0, "picture_needed", message));
    }
    // Blankest first, as shown: the earliest state of the picture first, as the API wants them.
    const kept = [...$("keyframes").children].filter((item) => item.querySelector("input:checked"));
    $("make-video").disabled = true;
    try {
      // Read again: its URLs are minted afresh, and the ones shown may have expired.
      const fresh = await (await api(`v1/jobs/${job.id}`)).json();
      const urls = new Map(fresh.keyframes.map((keyframe) => [keyframe.index, keyframe.url]));
      const body = new FormData();
      body.append("image", picture);
      for (const item of kept) {
        const blob = await keyframeBlob(urls.get(Number(item.dataset.index)));
        body.append("keyframe", blob, `keyframe-${item.dataset.undoStep}.${blob.type.split("/").pop() || "png"}`);
      }
      const settings = secondPhaseSettings(fresh.settings);
      if (Object.keys(settings).length) body.append("settings", JSON.stringify(settings));
      const next = await (await api("v1/jobs", { method: "POST", body })).json();
      pictures.set(next.id, picture);
      openJob(next);
      loadRecent();
    } catch (error) {
      showError(error);
      updatePick();
    }
  });
}

// The first job's settings that differ from their defaults, less those of the keyframe model.
function secondPhaseSettings(settings) {
  const defaults = Object.fromEntries(fields.map((field) => [field.name, field.fallback]));
  return Object.fromEntries(
    Object.entries(settings).filter(
      ([name, value]) =>
        !NOT_WITH_OWN_KEYFRAMES.includes(name) && JSON.stringify(value) !== JSON.stringify(defaults[name]),
    ),
  );
}

// A keyframe's file as a Blob. From this origin (folder storage's /v1/files URLs) with fetch(); from a storage
// elsewhere, which the page's Content-Security-Policy does not let it connect to, as an image drawn on a canvas
// and saved as PNG (the same pixels; the storage must allow this origin with CORS, as for any read of it).
async function keyframeBlob(url) {
  const address = new URL(url, location.href);
  if (address.origin === location.origin) {
    let response;
    try {
      response = await fetch(address);
    } catch {
      throw new ApiError(0, "network_error", "The API did not answer; check your connection and try again.");
    }
    if (!response.ok) throw await errorOf(response);
    return response.blob();
  }
  const image = new Image();
  image.crossOrigin = "anonymous";
  image.src = address.href;
  try {
    await image.decode();
  } catch {
    const message = `A keyframe could not be read from ${address.origin}: the storage must allow this page (CORS).`;
    throw new ApiError(0, "keyframe_unreadable", message);
  }
  const canvas = element("canvas", { width: image.naturalWidth, height: image.naturalHeight });
  canvas.getContext("2d").drawImage(image, 0, 0);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

function onEvent(type, data) {
  if (type === "job.queued") update({ status: "queued", queue_position: null });
  if (type === "job.started") update({ status: "running" });
  if (type === "job.prompt") setPrompt(data.prompt);
  if (type === "job.keyframe") addKeyframe(data);
  if ("progress" in data) update({ step: null, total: null, ...data });
  if (data.job) {
    showJob(data.job);
    loadRecent();
  }
}

// Reads the job's events until its terminal one; a dropped connection resumes after the last event seen.
async function follow(jobId, signal) {
  let lastEventId = null;
  for (let attempt = 0; !signal.aborted; attempt++) {
    try {
      const headers = lastEventId ? { "Last-Event-ID": lastEventId } : {};
      const response = await api(`v1/jobs/${jobId}/events`, { headers, signal });
      if (response.status === 204) return showJob(await (await api(`v1/jobs/${jobId}`, { signal })).json());
      for await (const message of sseMessages(response.body)) {
        attempt = 0;
        lastEventId = message.id ?? lastEventId;
        const data = JSON.parse(message.data);
        onEvent(message.event, data);
        if (data.job) return;
      }
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && error.status >= 400 && error.status < 500) return showError(error);
    }
    $("job-detail").textContent = "Connection lost; reconnecting…";
    await sleep(RETRY_SECONDS[Math.min(attempt, RETRY_SECONDS.length - 1)], signal);
  }
}

// The messages of a text/event-stream body: { id, event, data } (comments skipped).
async function* sseMessages(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let message = { event: "message", data: [] };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      const lines = buffer.split("\n");
      buffer = lines.pop();
      for (const raw of lines) {
        const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
        if (line === "") {
          if (message.data.length) yield { ...message, data: message.data.join("\n") };
          message = { event: "message", data: [] };
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "data") message.data.push(value);
          else if (field === "event" || field === "id") message[field] = value;
        }
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

function sleep(seconds, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, seconds * 1000);
    const stop = () => {
      clearTimeout(timer);
      resolve();
    };
    signal.addEventListener("abort", stop, { once: true });
  });
}

function setUpCancel() {
  $("cancel").addEventListener("click", async () => {
    $("cancel").disabled = true;
    try {
      showJob(await (await api(`v1/jobs/${$("job-id").textContent}/cancel`, { method: "POST" })).json());
    } catch (error) {
      $("cancel").disabled = false;
      showError(error);
    }
  });
}

// --- The key's recent jobs ------------------------------------------------------------------------------------------

async function loadRecent() {
  if (!$("api-key").value.trim()) return showRecent([], "Enter your API key to see its jobs.");
  try {
    const { jobs } = await (await api(`v1/jobs?limit=${RECENT_JOBS}`)).json();
    showRecent(jobs, "No jobs yet.");
  } catch (error) {
    showRecent([], "The jobs could not be listed.");
    showError(error);
  }
}

function showRecent(jobs, emptyText) {
  $("recent-empty").textContent = emptyText;
  $("recent-empty").hidden = jobs.length > 0;
  $("recent").replaceChildren(
    ...jobs.map((job) => {
      const badge = element("span", { className: "badge", textContent: job.status });
      badge.dataset.status = job.status;
      const when = new Date(job.created_at).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
      const button = element(
        "button",
        { type: "button", className: "recent-job" },
        element("code", { textContent: job.id }),
        element("span", { className: "muted", textContent: when }),
        badge,
      );
      button.addEventListener("click", async () => {
        clearError();
        try {
          openJob(await (await api(`v1/jobs/${job.id}`)).json());
        } catch (error) {
          showError(error);
        }
      });
      return element("li", {}, button);
    }),
  );
}

// --- Formatting -----------------------------------------------------------------------------------------------------

function formatSeconds(seconds) {
  const whole = Math.max(0, Math.round(seconds));
  if (whole < 60) return `${whole} s`;
  const minutes = Math.floor(whole / 60);
  return whole % 60 ? `${minutes} min ${whole % 60} s` : `${minutes} min`;
}

function formatBytes(bytes) {
  if (bytes < 1000) return `${bytes} B`;
  if (bytes < 1e6) return `${(bytes / 1e3).toFixed(0)} kB`;
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

// --- Start ----------------------------------------------------------------------------------------------------------

setUpKey();
setUpPicture();
setUpOwnKeyframes();
setUpSubmit();
setUpPick();
setUpCancel();
$("refresh").addEventListener("click", () => {
  clearError();
  loadRecent();
});
setUpSettings().catch(() =>
  showError(new ApiError(0, "no_settings", "The settings could not be read from openapi.json; reload the page.")),
);
loadRecent();
