-- A new 26-character ULID: the 10-character time part of now (Unix milliseconds), then
-- hex(randomblob(8)) (16 characters, all Crockford base32). Used only to key new rows.
(SELECT substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> 45) & 31) + 1, 1) ||
        substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> 40) & 31) + 1, 1) ||
        substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> 35) & 31) + 1, 1) ||
        substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> 30) & 31) + 1, 1) ||
        substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> 25) & 31) + 1, 1) ||
        substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> 20) & 31) + 1, 1) ||
        substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> 15) & 31) + 1, 1) ||
        substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> 10) & 31) + 1, 1) ||
        substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> 5) & 31) + 1, 1) ||
        substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', (ms & 31) + 1, 1) ||
        hex(randomblob(8))
   FROM (SELECT {{now_ms}} AS ms))
