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

from app.analytics.queries import CLICK_PAIRS

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
