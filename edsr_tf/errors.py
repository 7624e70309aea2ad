"""Error text shared by every layer: the one line of an exception a message quotes."""

from __future__ import annotations

#: Lines TensorFlow puts before or around the telling one of a graph error.
_TF_NOISE = ("Graph execution error:", "Detected at node", "<stack traces unavailable>")


def first_line(e: BaseException, *, typed: bool = False) -> str:
    """The telling line of an exception's message, for a one-line error.

    The first non-empty line, skipping TensorFlow's "Graph execution error:" preamble (an
    ``assertion failed:`` line, a failed ``tf.debugging.Assert``'s text, wins); the type
    name when the message is empty. ``typed``: prefixed with the type name (``OSError: ...``).
    """
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    line = next((ln for ln in lines if ln.startswith("assertion failed:")), None)
    if line is None:
        line = next((ln for ln in lines if not ln.startswith(_TF_NOISE)), None)
    if line is None:
        return type(e).__name__
    return f"{type(e).__name__}: {line}" if typed else line
