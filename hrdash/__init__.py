"""hrdash: a live heart-rate monitor for WebSocket services, built on Plotly Dash.

Not a medical device.
"""

__version__ = "0.1.0"
