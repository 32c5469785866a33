"""Copy the top-level schemas/ and profiles/ into the wheel as pilot/data/.

They live at the top of the repository because editors, pack authors and CI
point at them there; the wheel needs its own copy so that `pilot validate`
works after a plain, non-editable install.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent


class build_py_with_data(build_py):
    def run(self):
        super().run()
        target = Path(self.build_lib) / "pilot" / "data"
        for name in ("schemas", "profiles"):
            dest = target / name
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(ROOT / name, dest)


setup(cmdclass={"build_py": build_py_with_data})
