"""The registry: devices (meters) and the tags that hold their channels."""
