"""lrbook: helpers for the executable reproduction of Barsbey et al., "Large Learning Rates
Simultaneously Achieve Robustness to Spurious Correlations and Compressibility" (ICCV 2025)."""
__version__ = "0.1.0"

from .config import ConfigError, RunConfig, grid, make_config  # noqa: E402,F401
from .store import ResultStore  # noqa: E402,F401
