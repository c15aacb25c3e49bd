"""Address notation shared by the interop scripts (xproc's strings to Python's forms)."""

def parse_address(text):
    """'host:port' -> (host, port); '@name' -> abstract '\0name'; else a path."""
    if text.startswith("@"):
        return "\0" + text[1:]
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and not text.startswith(("/", ".")):
        return (host, int(port))
    return text
