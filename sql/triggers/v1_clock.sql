-- One row: ms = now in Unix milliseconds; prefix = the 10-character ULID time part of ms.
-- Appending hex(randomblob(8)) (16 characters, all Crockford base32) makes a 26-character ULID.
-- Evaluated once per trigger firing, so the mutation id and a new sync key share one reading.
(SELECT ms,
        substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> 45) & 31) + 1, 1) ||
        substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> 40) & 31) + 1, 1) ||
        substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> 35) & 31) + 1, 1) ||
        substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> 30) & 31) + 1, 1) ||
        substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> 25) & 31) + 1, 1) ||
        substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> 20) & 31) + 1, 1) ||
        substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> 15) & 31) + 1, 1) ||
        substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> 10) & 31) + 1, 1) ||
        substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> 5) & 31) + 1, 1) ||
        substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', (ms & 31) + 1, 1) AS prefix
   FROM (SELECT CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) AS ms)) AS clock
