"""The Docker Engine side of a GPU host: daemon.json, dockerd's lifecycle, the GPU container probe.

Never name a package ``docker`` here: it would shadow docker-py.
"""
