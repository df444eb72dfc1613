"""jinja2 environment over the templates shipped inside the package.

The templates live in ``templates/`` at the top of the source tree; the wheel
installs them as ``rseq_gen/templates``. A source checkout run with
PYTHONPATH=toolkit falls back to the source tree, so development does not need
a reinstall after each edit.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def template_dir() -> Path:
    installed = PACKAGE_DIR / "templates"
    if installed.is_dir():
        return installed
    source = PACKAGE_DIR.parent.parent / "templates"
    if source.is_dir():
        return source
    raise FileNotFoundError(f"rseq-gen templates not found in {installed}")


class RecordingLoader:
    """A FileSystemLoader that remembers every template file it read, for
    the depfile."""

    def __init__(self, root: Path):
        import jinja2

        self.root = root
        self.read: list[Path] = []
        self._inner = jinja2.FileSystemLoader(str(root))

    def make(self):
        import jinja2

        loader = self

        class _Loader(jinja2.BaseLoader):
            def get_source(self, environment, template):
                source, filename, uptodate = loader._inner.get_source(environment, template)
                path = Path(filename)
                if path not in loader.read:
                    loader.read.append(path)
                return source, filename, uptodate

        return _Loader()


def make_environment():
    import jinja2

    recorder = RecordingLoader(template_dir())
    env = jinja2.Environment(
        loader=recorder.make(),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        cache_size=0,
    )
    return env, recorder
