"""jaxstyle: behavioural stylometry with style vectors (chess)."""
