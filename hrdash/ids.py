"""Element ids of the page, in one place. The ``hr-*`` ids are a contract (tests, tools and user
callback modules rely on them); never repeat them as string literals elsewhere."""

WS = "hr-ws"  # dash_extensions.WebSocket
TABLE = "hr-table"  # dash_ag_grid.AgGrid
CHART = "hr-chart"  # dcc.Graph
CURRENT_BPM = "hr-current-bpm"
CURRENT_TIME = "hr-current-time"
STATUS = "hr-status"  # connection badge

# Internal (not part of the contract, but stable).
STORE = "hr-store"  # dcc.Store: the client's window of readings and connection state
CONFIG = "hr-config"  # dcc.Store: page settings (window, order, ws url, stale_after)
TICK = "hr-tick"  # dcc.Interval driving the clientside staleness check (no server requests)
STAT_MIN = "hr-stat-min"
STAT_AVG = "hr-stat-avg"
STAT_MAX = "hr-stat-max"
CURRENT_CARD = "hr-current-card"
SOURCE = "hr-source"
