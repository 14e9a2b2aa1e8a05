"""Pure computation on numpy/pandas: calendar minutes, the symbol × minute panel, gap,
quality and derivation kernels, synthetic bars. No Prefect, SQL or Great Expectations here."""
