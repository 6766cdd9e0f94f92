"""The image as a tree of files: what seal removes from it (found without following links), the deep
clean before imaging, and the stamp that says how it was sealed."""
