"""The business metrics as parameterised ClickHouse SQL, one readable query each.

Conventions shared by every query:
- They read the deduplicated events (`interactions FINAL`): Kafka is
  at-least-once, so a re-delivered event must not count twice (retention,
  which depends only on which days a user was active, is the one exception).
- Values come only through `clickhouse_driver` `%(name)s` parameters built by
  `app.analytics.api.query_params` (never string-built from request values).
  `%(start)s` / `%(stop)s` are epoch seconds of the first day's midnight and of
  the midnight after the last day (UTC, half-open range); `%(day_from)s` /
  `%(day_to)s` are the inclusive dates; event types are parameters too, so
  their names stay defined once in `app.schema`.
- Queries return counts and sums, not ratios: Python divides (0 when the
  denominator is 0), so per-day rows add up exactly to the range totals and an
  empty range gives zeros instead of NaN.
- Written for ClickHouse 18.16 (the Debian server): no WITH FILL (missing days
  are filled in Python), no window functions, no DateTime64.
Days are UTC calendar days (`toDate(ts, 'UTC')`).

Why queries and not materialized views: an MV sees every inserted block,
re-deliveries included, so its counts would drift above the deduplicated
truth; and plain views over the whole history cannot take the range as a
parameter. Cost: `bench/analytics.py` (300k events: the whole dashboard is about
20 `count() FINAL` scans of the range, 1.4-2.4 s on the 2-core dev machine).
"""
from __future__ import annotations

_IN_RANGE = "ts >= toDateTime(%(start)s) AND ts < toDateTime(%(stop)s)"

# Time on site. A session is (user_id, session_id) within one UTC day; its
# time is max(ts) - min(ts). A user's time on a day is the sum of their
# sessions; events without a session_id make the user active but add no time.
# Per day: active users and the summed seconds (average = seconds / users).
TIME_ON_SITE_BY_DAY = f"""
SELECT day, count() AS active_users, sum(user_seconds) AS seconds
FROM (
    SELECT day, user_id, sum(session_seconds) AS user_seconds
    FROM (
        SELECT toDate(ts, 'UTC') AS day, user_id, session_id,
               if(session_id = '', 0, toUInt64(max(ts)) - toUInt64(min(ts))) AS session_seconds
        FROM interactions FINAL
        WHERE {_IN_RANGE}
        GROUP BY day, user_id, session_id
    )
    GROUP BY day, user_id
)
GROUP BY day
ORDER BY day
"""

# Distinct users with any event in the range (not the sum of daily actives).
ACTIVE_USERS = f"SELECT uniqExact(user_id) FROM interactions FINAL WHERE {_IN_RANGE}"

# Retention of daily cohorts. A user's cohort is the UTC day of their first
# event ever (not only within the range); they are retained on Dk when they
# have any event on cohort + k days. Cohorts whose first day is in the range.
# Bounded to the users active in the range: such a user is in a cohort of the
# range unless they have an event before it, and their Dk days lie before
# stop + 31 days. So the query reads the range plus 31 days, and of the older
# history only the rows of those users (the sorting key starts with user_id;
# the monthly partitions are pruned by ts), never every user's history.
# No FINAL, the one exception to the rule above: a re-delivered event changes
# neither a user's first day nor the set of days they were active.
_ACTIVE_USERS = f"SELECT user_id FROM interactions WHERE {_IN_RANGE}"
RETENTION_BY_COHORT = f"""
SELECT cohort, count() AS size,
       countIf(has(days, cohort + 1)) AS d1,
       countIf(has(days, cohort + 7)) AS d7,
       countIf(has(days, cohort + 30)) AS d30
FROM (
    SELECT user_id, min(toDate(ts, 'UTC')) AS cohort, groupUniqArray(toDate(ts, 'UTC')) AS days
    FROM interactions
    WHERE ts >= toDateTime(%(start)s) AND ts < toDateTime(%(stop)s) + 31 * 86400
      AND user_id IN ({_ACTIVE_USERS})
      AND user_id NOT IN (
          SELECT user_id FROM interactions WHERE ts < toDateTime(%(start)s) AND user_id IN ({_ACTIVE_USERS})
      )
    GROUP BY user_id
)
WHERE cohort >= %(day_from)s AND cohort <= %(day_to)s
GROUP BY cohort
ORDER BY cohort
"""

# The last UTC day with any event: day cohort + k is observable only up to it.
# Only days from the range on matter (the cohorts are in it): the partitions
# before it are pruned.
LAST_EVENT_DAY = "SELECT max(toDate(ts, 'UTC')) FROM interactions WHERE ts >= toDateTime(%(start)s)"

# Ratings (1..10) and plays/completes per day, one scan.
ENGAGEMENT_BY_DAY = f"""
SELECT toDate(ts, 'UTC') AS day,
       countIf(event_type = %(rate)s) AS ratings,
       sumIf(rating, event_type = %(rate)s) AS rating_sum,
       countIf(event_type = %(play)s) AS plays,
       countIf(event_type = %(complete)s) AS completes
FROM interactions FINAL
WHERE {_IN_RANGE}
GROUP BY day
ORDER BY day
"""

# Watched share per viewing. A viewing is (user, film, UTC day); its share is
# the furthest position reached over the film length, capped at 1 (a
# `complete` sent a few seconds past the end is still 100 %).
WATCH_RATIO_BY_DAY = f"""
SELECT day, count() AS viewings, sum(ratio) AS ratio_sum
FROM (
    SELECT toDate(ts, 'UTC') AS day, user_id, film_id,
           least(max(watch_seconds) / max(duration_seconds), 1) AS ratio
    FROM interactions FINAL
    WHERE {_IN_RANGE} AND event_type IN %(watch_types)s AND duration_seconds > 0
    GROUP BY day, user_id, film_id
)
GROUP BY day
ORDER BY day
"""

# Click attribution. A click goes to the latest impression of the same film,
# for the same user, from the same source and model_version, at or before it
# (in the range), if that impression is at most ATTRIBUTION_WINDOW_S older; an
# impression takes at most one click. So attributed clicks <= impressions in
# every group, every day included, and CTR stays within [0, 1]. Other clicks (a
# film found by search, a double click, an impression before the range) are
# unattributed: counted apart, never in CTR.
# `shown_rows` gives one row per impression (is_impression = 1, clicked 0/1) and
# one row per group with clicks but no impression (is_impression = 0); n_clicks
# is the group's click count. Written with two ARRAY JOINs and plain comparisons:
# 18.16 lambdas lose the columns they capture when an outer query prunes them.
ATTRIBUTION_WINDOW_S = 3600


def shown_rows(events: str, keys: str, impression: str = "%(impression)s", click: str = "%(click)s") -> str:
    """The attribution rows of `events` (SQL with `keys`, event_type and ts), grouped by `keys`
    (which must include user_id, film_id, source, model_version)."""
    return f"""
SELECT {keys}, n_clicks, j > 0 AS is_impression, shown_at, max(hit) AS clicked
FROM (
    SELECT {keys}, n_clicks, j, shown_at,
           j > 0 AND click_at >= shown_at AND click_at <= shown_at + {ATTRIBUTION_WINDOW_S}
               AND (j = n_impressions OR click_at < next_shown_at) AS hit
    FROM (
        SELECT {keys}, n_clicks, n_impressions, click_times, shown_at, j, impression_times[j + 1] AS next_shown_at
        FROM (
            SELECT {keys}, arraySort(groupArrayIf(ts, event_type = {impression})) AS impression_times,
                   groupArrayIf(ts, event_type = {click}) AS click_times,
                   length(impression_times) AS n_impressions, length(click_times) AS n_clicks
            FROM ({events})
            WHERE event_type IN ({impression}, {click})
            GROUP BY {keys}
        )
        LEFT ARRAY JOIN impression_times AS shown_at, arrayEnumerate(impression_times) AS j
    )
    LEFT ARRAY JOIN click_times AS click_at
)
GROUP BY {keys}, n_clicks, j, shown_at
"""


_PAIR = "user_id, film_id, source, model_version"

# Per (user, film, source, model_version) in the range: impressions, clicks, attributed clicks.
CLICK_PAIRS = f"""
SELECT {_PAIR}, sum(is_impression) AS impressions, any(n_clicks) AS clicks, sum(clicked) AS attributed
FROM ({shown_rows(f"SELECT {_PAIR}, event_type, ts FROM interactions FINAL WHERE {_IN_RANGE}", _PAIR)})
GROUP BY {_PAIR}
"""

# Recommendation funnel by where the film was shown (source) and by which model
# produced the list (model_version; '' for non-model sources): impressions and
# attributed clicks (see CLICK_PAIRS), so clicks <= impressions in every row.
FUNNEL = f"""
SELECT source, model_version, sum(impressions) AS impressions, sum(attributed) AS clicks
FROM ({CLICK_PAIRS})
GROUP BY source, model_version
"""

# The clicks FUNNEL leaves out, by the source/model_version they carried.
UNATTRIBUTED_CLICKS = f"""
SELECT source, model_version, sum(clicks - attributed) AS unattributed_clicks
FROM ({CLICK_PAIRS})
GROUP BY source, model_version
HAVING unattributed_clicks > 0
"""

# Watch time attributed to recommendations. A (user, film) pair with a click
# in the range is credited to the source/model_version of its FIRST click;
# its watch time is the furthest position reached (watch_seconds is a
# position, so positions are not summed) by watch events at or after that
# click, in the range; `watched` counts the clicked pairs with such an event.
# (ARRAY JOIN rather than a lambda: 18.16 lambdas cannot see other columns.)
ATTRIBUTED_WATCH = f"""
SELECT source, model_version, count() AS clicked, sum(watched) AS watched, sum(watch_s) AS watch_seconds
FROM (
    SELECT user_id, film_id, any(source) AS source, any(model_version) AS model_version,
           max(watch_ts >= click_ts) AS watched,
           max(if(watch_ts >= click_ts, watch_position, 0)) AS watch_s
    FROM (
        SELECT user_id, film_id,
               minIf(ts, event_type = %(click)s) AS click_ts,
               argMinIf(source, ts, event_type = %(click)s) AS source,
               argMinIf(model_version, ts, event_type = %(click)s) AS model_version,
               groupArrayIf(toFloat64(watch_seconds), event_type IN %(watch_types)s) AS watch_positions,
               groupArrayIf(ts, event_type IN %(watch_types)s) AS watch_times
        FROM interactions FINAL
        WHERE {_IN_RANGE} AND (event_type = %(click)s OR event_type IN %(watch_types)s)
        GROUP BY user_id, film_id
        HAVING countIf(event_type = %(click)s) > 0
    )
    LEFT ARRAY JOIN watch_positions AS watch_position, watch_times AS watch_ts
    GROUP BY user_id, film_id
)
GROUP BY source, model_version
"""

# Ingestion lag: how long after its event time a row reached ClickHouse
# (`ingested_at` is set by the server on insert), per day of event time.
INGEST_LAG_BY_DAY = f"""
SELECT toDate(ts, 'UTC') AS day, count() AS events,
       avg(toInt64(ingested_at) - toInt64(ts)) AS lag_avg_s,
       quantile(0.5)(toInt64(ingested_at) - toInt64(ts)) AS lag_p50_s,
       quantile(0.95)(toInt64(ingested_at) - toInt64(ts)) AS lag_p95_s
FROM interactions FINAL
WHERE {_IN_RANGE}
GROUP BY day
ORDER BY day
"""

# Training runs that overlap the range, with their offline metrics (JSON text).
MODEL_RUNS = """
SELECT version, started_at, finished_at, backend, status, published, reason,
       n_users, n_items, n_interactions, metrics, baseline_metrics
FROM model_runs FINAL
WHERE finished_at >= toDateTime(%(start)s) AND started_at < toDateTime(%(stop)s)
ORDER BY started_at
"""
