"""routectl.ops: the operator's read-only views of a cluster — `routectl plan` and `routectl status` — and the
report/render code `routectl simulate` shares with them.

Modules: `report` (pure: Kubernetes objects + cloud routes -> stable JSON-ready dicts), `render` (pure:
those dicts -> aligned text), `schema` (JSON schemas of the documented output shapes), `planning` (pure:
nodes and pools -> route inputs and predicted allocations), `kube` and `cloud` (read-only I/O),
`options` (the click options shared with `routectl controller`), `plan` and `status` (the commands).
"""
