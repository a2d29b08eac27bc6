"""Stand-in for the `xformers` package, for running the upstream Paints-UNDO code without xformers installed.

bench/reference_flow.py puts bench/reference_shims/ first on sys.path only when the real xformers
cannot be imported. It holds just what upstream's diffusers_vdm calls: `ops.memory_efficient_attention`.
"""
