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
ORIGIN_ALERT = "hr-origin-alert"  # shown when the bridge refuses the page's origin

# Source panel (a collapsible <details> below the header), filled from the bridge's status frames.
SOURCE_PANEL = "hr-source-panel"  # html.Details
SOURCE_SUMMARY_NAME = "hr-source-summary-name"
SOURCE_SUMMARY_STATE = "hr-source-summary-state"
SOURCE_SUMMARY_COUNTS = "hr-source-summary-counts"
SOURCE_URL = "hr-source-url"
SOURCE_STATE = "hr-source-state"
SOURCE_SINCE = "hr-source-since"
SOURCE_DETAIL = "hr-source-detail"
SOURCE_FRAMES = "hr-source-frames"
SOURCE_ACCEPTED = "hr-source-accepted"
SOURCE_REJECTED = "hr-source-rejected"
SOURCE_REASONS = "hr-source-reasons"  # <tbody>: one row per rejection reason
SOURCE_MAP_VALUE = "hr-source-map-value"
SOURCE_MAP_TIME = "hr-source-map-time"
SOURCE_MAP_ORIGIN = "hr-source-map-origin"  # inferred (and confidence) / configured / default
SOURCE_MAP_TRANSFORM = "hr-source-map-transform"
SOURCE_LAST_FRAME = "hr-source-last-frame"  # html.Pre, text only
SOURCE_LAST_FRAME_AT = "hr-source-last-frame-at"
SOURCE_REJ_REASON = "hr-source-rej-reason"
SOURCE_REJ_DETAIL = "hr-source-rej-detail"
SOURCE_REJ_AT = "hr-source-rej-at"
SOURCE_REJ_FRAME = "hr-source-rej-frame"  # html.Pre, text only
SOURCE_HISTORY = "hr-source-history"  # one line: the history's recorder (state, counts, cause)

# Name (as the clientside code knows it) → element id, handed to the browser in the config store.
SOURCE_IDS = {
    "panel": SOURCE_PANEL,
    "summary_name": SOURCE_SUMMARY_NAME,
    "summary_state": SOURCE_SUMMARY_STATE,
    "summary_counts": SOURCE_SUMMARY_COUNTS,
    "url": SOURCE_URL,
    "state": SOURCE_STATE,
    "since": SOURCE_SINCE,
    "detail": SOURCE_DETAIL,
    "frames": SOURCE_FRAMES,
    "accepted": SOURCE_ACCEPTED,
    "rejected": SOURCE_REJECTED,
    "reasons": SOURCE_REASONS,
    "map_value": SOURCE_MAP_VALUE,
    "map_time": SOURCE_MAP_TIME,
    "map_origin": SOURCE_MAP_ORIGIN,
    "map_transform": SOURCE_MAP_TRANSFORM,
    "last_frame": SOURCE_LAST_FRAME,
    "last_frame_at": SOURCE_LAST_FRAME_AT,
    "rej_reason": SOURCE_REJ_REASON,
    "rej_detail": SOURCE_REJ_DETAIL,
    "rej_at": SOURCE_REJ_AT,
    "rej_frame": SOURCE_REJ_FRAME,
    "history": SOURCE_HISTORY,
}

# Session card (hrdash/callbacks/session.py): summary and CSV export of a stored range.
SESSION_RANGE = "hr-session-range"
SESSION_SUMMARY_BUTTON = "hr-session-summarise"
SESSION_SUMMARY = "hr-session-summary"
SESSION_EXPORT_BUTTON = "hr-session-export"
SESSION_DOWNLOAD = "hr-session-download"

# Monitor page header (hrdash/pages/patient.py): the patient's name and the link to the station.
PATIENT_NAME = "hr-patient-name"
BACK_LINK = "hr-back"  # "← Station", only when there are several patients
NOT_FOUND = "hr-not-found"  # the "No patient <id>" page

# Station page (hrdash/pages/station.py); assets/station.js fills it.
STATION = "hr-station"  # the tile grid (class hr-station-grid, --hr-cols/--hr-rows)
STATION_WS = "hr-station-ws"  # dash_extensions.WebSocket on /ws?station=1
STATION_CONFIG = "hr-station-config"  # dcc.Store
STATION_STATUS = "hr-station-status"  # connection badge
STATION_ALARMS = "hr-station-alarms"  # active alarms, highest priority first
STATION_MESSAGE = "hr-station-message"  # a refused acknowledgement, shown briefly
TILE_PREFIX = "hr-tile-"  # a tile's id is TILE_PREFIX + patient id
ACK_CLASS = "hr-ack"  # class of an ack button (with data-alarm-id), on tiles and alarm lists


def tile(patient_id: str) -> str:
    """The element id of ``patient_id``'s station tile."""
    return TILE_PREFIX + patient_id


# Name (as assets/station.js knows it) → element id, handed to the browser in the station config.
STATION_IDS = {
    "grid": STATION,
    "ws": STATION_WS,
    "status": STATION_STATUS,
    "alarms": STATION_ALARMS,
    "message": STATION_MESSAGE,
    "tile_prefix": TILE_PREFIX,
}

# Trend card of the monitor (hrdash/callbacks/trend.py); assets/trend.js fills it.
TREND = "hr-trend"  # dcc.Graph: min-max band and mean line, or the raw readings when zoomed in
TREND_CARD = "hr-trend-card"  # the card (data-range, data-mode, data-drawn: what it shows)
TREND_CONFIG = "hr-trend-config"  # dcc.Store: the trend's constants and ids
TREND_RANGES = "hr-trend-ranges"  # the 1 h / 8 h / 24 h buttons (each with data-range)
TREND_FROM = "hr-trend-from"  # custom range: <input type="datetime-local">, local time
TREND_TO = "hr-trend-to"
TREND_SHOW = "hr-trend-show"  # custom range: the button that shows it
TREND_STATUS = "hr-trend-status"  # one line: what is drawn, or why nothing is
TREND_READINGS_CSV = "hr-trend-readings-csv"  # export links of the shown range
TREND_TREND_CSV = "hr-trend-trend-csv"

# Name (as assets/trend.js knows it) → element id, handed to the browser in the trend config.
TREND_IDS = {
    "graph": TREND,
    "card": TREND_CARD,
    "ranges": TREND_RANGES,
    "from": TREND_FROM,
    "to": TREND_TO,
    "show": TREND_SHOW,
    "status": TREND_STATUS,
    "readings_csv": TREND_READINGS_CSV,
    "trend_csv": TREND_TREND_CSV,
}

# The sound control (hrdash.layout.audio_control, on the station and the monitor), driven by
# assets/alarm_sound.js, which finds AUDIO and reads the others from its data-config.
AUDIO = "hr-audio"  # the control (data-sound="off|on|unsupported", data-sounding)
AUDIO_ENABLE = "hr-audio-enable"  # "Alarm sound is off — click to enable" / "Sound on"
AUDIO_PAUSE = "hr-audio-pause"  # "Pause audio 2 min"
AUDIO_COUNTDOWN = "hr-audio-countdown"  # "Audio paused 1:43", hidden when no pause runs
AUDIO_MESSAGE = "hr-audio-message"  # a refused pause, shown briefly

# Alarms panel of the monitor (hrdash/callbacks/alarm_panel.py); assets/alarm_panel.js fills it.
ALARMS = "hr-alarms"  # the panel: the patient's current alarms and the log
ALARM_CONFIG = "hr-alarm-config"  # dcc.Store: the panel's constants, labels and ids
ALARM_CURRENT = "hr-alarm-current"  # <ul>: one item per current alarm (ack buttons in it)
ALARM_MESSAGE = "hr-alarm-message"  # one line: an acknowledge the bridge refused
ALARM_LOG = "hr-alarm-log"  # <table>: the newest log entries, newest first
ALARM_LOG_STATUS = "hr-alarm-log-status"  # one line under the log: what is shown, or why not
ALARM_EXPORT = "hr-alarm-export"  # "Export log (CSV)"
LIMITS = "hr-limits"  # the limits editor
LIMIT_EXTREME_LOW = "hr-limit-extreme_low"  # the editor's inputs, one per limit
LIMIT_LOW = "hr-limit-low"
LIMIT_HIGH = "hr-limit-high"
LIMIT_EXTREME_HIGH = "hr-limit-extreme_high"
LIMITS_APPLY = "hr-limits-apply"
LIMITS_MESSAGE = "hr-limits-message"  # one line: a refused value, the bridge's error, success


# Limit name (hrdash.alarms.LIMIT_ORDER) → the editor's input for it.
LIMIT_INPUTS = {
    "extreme_low": LIMIT_EXTREME_LOW,
    "low": LIMIT_LOW,
    "high": LIMIT_HIGH,
    "extreme_high": LIMIT_EXTREME_HIGH,
}


def limit_input(name: str) -> str:
    """The element id of the limits editor's input for ``name`` (one of LIMIT_ORDER)."""
    return LIMIT_INPUTS[name]


# Name (as assets/alarm_panel.js knows it) → element id, handed to the browser in its config.
ALARM_IDS = {
    "panel": ALARMS,
    "current": ALARM_CURRENT,
    "message": ALARM_MESSAGE,
    "log": ALARM_LOG,
    "log_status": ALARM_LOG_STATUS,
    "export": ALARM_EXPORT,
    "limits": LIMITS,
    "limit_inputs": LIMIT_INPUTS,
    "apply": LIMITS_APPLY,
    "limits_message": LIMITS_MESSAGE,
    "ws": WS,
}
