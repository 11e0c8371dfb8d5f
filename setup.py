"""Maps the repository root onto the `gim` import package.

The top-level folders keep the layout of the Go original (cmd/, internal/, pkg/), but
`cmd` is a standard-library module and bare `internal` / `pkg` collide easily once
installed, so every folder is installed as a sub-package of one namespace: `gim.cmd`,
`gim.internal.logic`, `gim.pkg.pb`, ...
"""

from setuptools import find_packages, setup

SOURCE_FOLDERS = ["bench", "client", "cmd", "internal", "pkg"]

packages = ["gim"] + [f"gim.{name}" for name in find_packages(".", include=[f"{folder}*" for folder in SOURCE_FOLDERS])]

# the chat page's built files (internal/web/static/, see `make web`) ship with the package
setup(packages=packages, package_dir={"gim": "."}, package_data={"gim.internal.web": ["static/*"]})
