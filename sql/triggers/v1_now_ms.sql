-- Now, in Unix milliseconds (SQLite keeps 'now' to the millisecond, fixed per statement).
CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)
