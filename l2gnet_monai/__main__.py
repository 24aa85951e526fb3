# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""``python -m l2gnet_monai COMMAND ...``: the command-line interface of :mod:`l2gnet_monai.cli`."""

import sys

from l2gnet_monai.cli import main

if __name__ == "__main__":
    sys.exit(main())
