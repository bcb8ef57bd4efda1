class PortError(ValueError):
    """A checkpoint that cannot be ported; the message names the file, tensor or layer at fault."""
