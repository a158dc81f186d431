"""Hub plumbing: downloading, saving and pushing pipelines, and model cards. Imported lazily (needs diffusers)."""
