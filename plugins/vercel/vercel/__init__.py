"""The Vercel Sandbox provider: contract calls in, Vercel's REST API (v1) out.

Modules, one concern each: `http` (the whole-body upstream import and the status →
error-kind table), `shapes` (Vercel's sandbox JSON → the world's records), `commands`
(exec: start, wait, logs, kill), `files` (fs read/write: Vercel's gzip tarball upload).
"""
