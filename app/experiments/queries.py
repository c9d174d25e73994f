"""Per-user figures of an experiment window as parameterised ClickHouse SQL (18.16).

Parameters: `%(start)s` / `%(stop)s` (epoch seconds, the half-open window),
event type names (`app.schema`), and `%(control)s` / `%(challenger)s` (versions).
Conventions as in `app.analytics.queries`: deduplicated events (FINAL), counts
and sums only (Python divides), no window functions.

Exposure: a user enters the experiment at their first impression in the
window (`exposed_at`); only what they do from then on counts (their earlier
events were not caused by what the arm showed them). Arms are not read from
the events: Python assigns them with the experiment's hash
(`app.experiments.assignment`), so the analysis does not depend on the site
echoing them; `impressions_control_version` / `..._challenger_version` check
that serving followed the arms.
"""
from __future__ import annotations

from app.analytics.queries import CLICK_PAIRS, shown_rows
from app.experiments.assignment import CHALLENGER, CONTROL, challenger_sql

_IN_WINDOW = "ts >= toDateTime(%(start)s) AND ts < toDateTime(%(stop)s)"

EXPOSURE = f"""
SELECT user_id, min(ts) AS exposed_at
FROM interactions FINAL
WHERE {_IN_WINDOW} AND event_type = %(impression)s
GROUP BY user_id
"""

# Per exposed user: exposure time, impressions, attributed and unattributed clicks
# (attribution: app.analytics.queries.CLICK_PAIRS; every impression is at or
# after the exposure by definition, so is every attributed click).
USER_EXPOSURE = f"""
SELECT user_id, toUInt64(exposed_at) AS exposed_at, shown, attributed_clicks, unattributed_clicks,
       impressions_control_version, impressions_challenger_version
FROM (
    SELECT user_id, sum(impressions) AS shown, sum(attributed) AS attributed_clicks,
           sum(clicks) - sum(attributed) AS unattributed_clicks,
           sumIf(impressions, model_version = %(control)s) AS impressions_control_version,
           sumIf(impressions, model_version = %(challenger)s) AS impressions_challenger_version
    FROM ({CLICK_PAIRS})
    GROUP BY user_id
    HAVING shown > 0
)
ANY INNER JOIN ({EXPOSURE}) USING user_id
ORDER BY user_id
"""

# Events from the user's exposure on, joined once per query.
_EXPOSED_EVENTS = f"""
    SELECT user_id, film_id, event_type, ts, session_id, watch_seconds, rating, exposed_at
    FROM (
        SELECT user_id, film_id, event_type, ts, session_id, watch_seconds, rating
        FROM interactions FINAL
        WHERE {_IN_WINDOW}
    )
    ALL INNER JOIN ({EXPOSURE}) USING user_id
    WHERE ts >= exposed_at
"""

# Per exposed user: time on site (sessions as in app.analytics.queries: a session
# is (user, session_id, UTC day), its time max(ts) - min(ts)), plays, ratings, and
# whether they were active on the 1st / 7th UTC day after the day of their exposure.
USER_ACTIVITY = f"""
SELECT user_id, sum(session_seconds) AS site_seconds, sum(session_plays) AS plays,
       sum(session_ratings) AS ratings, sum(session_rating_sum) AS rating_sum,
       has(groupUniqArray(day), toDate(any(exposed_at), 'UTC') + 1) AS active_d1,
       has(groupUniqArray(day), toDate(any(exposed_at), 'UTC') + 7) AS active_d7
FROM (
    SELECT user_id, toDate(ts, 'UTC') AS day, session_id, any(exposed_at) AS exposed_at,
           if(session_id = '', 0, toUInt64(max(ts)) - toUInt64(min(ts))) AS session_seconds,
           countIf(event_type = %(play)s) AS session_plays,
           countIf(event_type = %(rate)s) AS session_ratings,
           sumIf(toFloat64(rating), event_type = %(rate)s) AS session_rating_sum
    FROM ({_EXPOSED_EVENTS})
    GROUP BY user_id, day, session_id
)
GROUP BY user_id
ORDER BY user_id
"""

# Per exposed user, over their viewings: a viewing is a (user, film) pair with a
# watch event after the exposure; its watch time is the furthest position reached
# (positions are not summed); it is played if it has a `play`, completed if it is
# played and has a `complete` (so completed <= played: completion stays in [0, 1]).
USER_VIEWINGS = f"""
SELECT user_id, sum(position) AS watch_seconds, sum(is_played) AS played, sum(is_played AND is_completed) AS completed
FROM (
    SELECT user_id, film_id, max(toFloat64(watch_seconds)) AS position,
           countIf(event_type = %(play)s) > 0 AS is_played,
           countIf(event_type = %(complete)s) > 0 AS is_completed
    FROM ({_EXPOSED_EVENTS})
    WHERE event_type IN %(watch_types)s
    GROUP BY user_id, film_id
)
GROUP BY user_id
ORDER BY user_id
"""


# Per-arm daily figures: the analysts' view `experiment_daily` (every started
# experiment, its window from the `experiments` table) and the same SQL over one
# experiment given as parameters (ARM_DAILY: what a dashboard would run, with
# the window also bounding the scan). Per (experiment_id, arm, UTC day), over
# users from their exposure on, as in the report:
#   exposed_users   users first exposed that day
#   active_users    exposed users with an event that day
#   site_seconds    time on site (sessions per day, as above)
#   plays, ratings, rating_sum
#   impressions, clicks   attributed clicks, counted on the day of the impression
#                         that took them (so clicks <= impressions on every day)
#   viewings, completed_viewings, watch_seconds   per (user, film, day)
# Arms are assigned in SQL by the same hash as `app.experiments.assignment`.
_COLUMNS = ("exposed_users", "active_users", "site_seconds", "plays", "ratings", "rating_sum",
            "impressions", "clicks", "viewings", "completed_viewings", "watch_seconds")
DAILY_COLUMNS = ("experiment_id", "arm", "day", *_COLUMNS)  # a row of ARM_DAILY and of the view


def _branch(values: dict[str, str], source: str) -> str:
    """One UNION ALL branch: every column of _COLUMNS (0 unless given), grouped by experiment, arm, day."""
    select = ", ".join(f"toFloat64({values.get(name, '0')}) AS {name}" for name in _COLUMNS)
    return f"SELECT experiment_id, arm, day, {select} FROM ({source}) GROUP BY experiment_id, arm, day"


def arm_daily(experiments: str, interactions: str = "interactions", scan_filter: str = "") -> str:
    """The per-arm daily SQL for the experiment rows of `experiments` (experiment_id, hash_seed,
    threshold, window_start, window_stop). Event types are literals so it can be a view."""
    windowed = f"""
        SELECT experiment_id, user_id, film_id, event_type, ts, session_id, source, model_version, watch_seconds, rating,
               if({challenger_sql("hash_seed", "threshold")}, '{CHALLENGER}', '{CONTROL}') AS arm
        FROM (
            SELECT user_id, film_id, event_type, ts, session_id, source, model_version, watch_seconds, rating
            FROM {interactions} FINAL {scan_filter}
        )
        CROSS JOIN ({experiments})
        WHERE ts >= window_start AND ts < window_stop"""
    exposed = f"""
        SELECT experiment_id, arm, user_id, film_id, event_type, ts, session_id, source, model_version, watch_seconds,
               rating, exposed_at, toDate(ts, 'UTC') AS day
        FROM ({windowed})
        ALL INNER JOIN (
            SELECT experiment_id, user_id, min(ts) AS exposed_at FROM ({windowed})
            WHERE event_type = 'impression' GROUP BY experiment_id, user_id
        ) USING (experiment_id, user_id)
        WHERE ts >= exposed_at"""
    pair = "experiment_id, arm, user_id, film_id, source, model_version"
    clicks = f"""
        SELECT experiment_id, arm, toDate(shown_at, 'UTC') AS day, is_impression, clicked
        FROM ({shown_rows(exposed, pair, "'impression'", "'click'")}) WHERE is_impression"""
    sessions = f"""
        SELECT experiment_id, arm, day, user_id, any(exposed_at) AS exposed_at,
               if(session_id = '', 0, toUInt64(max(ts)) - toUInt64(min(ts))) AS seconds,
               countIf(event_type = 'play') AS n_plays, countIf(event_type = 'rate') AS n_ratings,
               sumIf(toFloat64(rating), event_type = 'rate') AS rating_total
        FROM ({exposed}) GROUP BY experiment_id, arm, day, user_id, session_id"""
    viewings = f"""
        SELECT experiment_id, arm, day, max(toFloat64(watch_seconds)) AS position,
               countIf(event_type = 'play') > 0 AS is_played, countIf(event_type = 'complete') > 0 AS is_completed
        FROM ({exposed}) WHERE event_type IN ('play', 'progress', 'complete')
        GROUP BY experiment_id, arm, day, user_id, film_id"""
    branches = [
        _branch({"exposed_users": "uniqExactIf(user_id, toDate(exposed_at, 'UTC') = day)",
                 "active_users": "uniqExact(user_id)", "site_seconds": "sum(seconds)", "plays": "sum(n_plays)",
                 "ratings": "sum(n_ratings)", "rating_sum": "sum(rating_total)"}, sessions),
        _branch({"impressions": "sum(is_impression)", "clicks": "sum(clicked)"}, clicks),
        _branch({"viewings": "sum(is_played)", "completed_viewings": "sum(is_played AND is_completed)",
                 "watch_seconds": "sum(position)"}, viewings),
    ]
    totals = ", ".join(f"sum({name}) AS {name}" for name in _COLUMNS)
    return f"""
SELECT experiment_id, arm, day, {totals}
FROM ({" UNION ALL ".join(branches)})
GROUP BY experiment_id, arm, day
ORDER BY experiment_id, day, arm"""


ARM_DAILY = arm_daily(
    "SELECT %(experiment_id)s AS experiment_id, toUInt64(%(seed)s) AS hash_seed, toUInt64(%(threshold)s) AS threshold,"
    " toDateTime(%(start)s) AS window_start, toDateTime(%(stop)s) AS window_stop",
    scan_filter=f"WHERE {_IN_WINDOW}",
)


def experiment_daily_view(db: str) -> str:
    """DDL of the analysts' view over every started experiment (the window of a running
    one ends now, capped at its maximum duration; the view scans all of `interactions`)."""
    experiments = f"""
        SELECT experiment_id, hash_seed, threshold, started_at AS window_start,
               if(ended_at > toDateTime(0), ended_at, least(now(), started_at + max_duration_s)) AS window_stop
        FROM {db}.experiments FINAL WHERE state != 'planned'"""
    return f"CREATE VIEW IF NOT EXISTS {db}.experiment_daily AS {arm_daily(experiments, f'{db}.interactions')}"
