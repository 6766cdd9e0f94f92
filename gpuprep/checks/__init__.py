"""doctor's checks, one module per group; each module exports ``CHECKS`` in display order."""
