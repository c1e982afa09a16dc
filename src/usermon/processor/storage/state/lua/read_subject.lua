-- KEYS as for the fold. ARGV: [1] t ('' for the subject's own newest event), [2] how many
-- windows, then the windows, then per set: how many members to list, HyperLogLog prefix.
-- Returns nil for no subject; {'r', record JSON} for a subject of the previous version; else
-- {'s', hash fields (flat), t used, last success's user agent, then per set: members (most recent
-- first), counts}.
return read_subject(KEYS, ARGV)
