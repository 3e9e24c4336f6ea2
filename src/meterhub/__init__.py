"""meterhub: meter readings as time series, served and billed."""
