# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The error of input data that cannot be used, and its one-line message form.

A :class:`DatasetError` names the file, key or argument at fault in one line; the command line prints it without
a traceback. Every step that reads a user's data raises it (conversion, datalists, the plan, packaging).
"""

from __future__ import annotations

__all__ = ["DatasetError", "one_line"]


class DatasetError(ValueError):
    """Input data that cannot be converted; the message is one line and names the file(s) concerned."""


def one_line(text: object) -> str:
    """Collapse ``text`` (an exception message, say) onto one line."""
    return " ".join(str(text).split())
