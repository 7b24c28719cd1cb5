"""glacgrid: glacier surface mass balance and geometry on gridded, chunked data."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("glacgrid")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

from .exceptions import GlacgridError  # noqa: E402

__all__ = ["GlacgridError", "__version__"]
