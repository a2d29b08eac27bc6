"""The job-system core, shared by the API and the workers: settings, job records and their Redis store,
event streams, storage, webhooks, the public job schema and domain errors.

Torch-free by contract (.importlinter): the API, webhook and scheduler processes import only this,
`model_core.settings` and `model_core.events`.
"""
