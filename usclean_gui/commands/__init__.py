"""Sub-commands of the usclean CLI (one module each)."""
