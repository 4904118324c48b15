"""corral.supervisor: the running service.

It loads the generator's config, runs llama-server children on demand and serves the HTTP
APIs. Its modules and what each owns are mapped in supervisor/DESIGN.md.
"""
