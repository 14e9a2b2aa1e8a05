"""barkeeper: clean intraday bars for backtest replays."""

__version__ = "0.1.0"
