"""The Lua script that makes dedupe + append one atomic step.

Redis runs a script in isolation: no other command runs between its dedupe check and its XADD,
so two deliveries of one webhook racing on two ingress replicas store it once. Its contract:

- KEYS, two per event: `KEYS[2i-1]` the event's dedupe key, `KEYS[2i]` its partition's stream.
- ARGV: `ARGV[1]` the dedupe TTL in seconds, `ARGV[2]` an approximate MAXLEN for the streams
  (0: no trimming), then `ARGV[2+i]` event i as JSON.
- Returns one `{flag, entry_id}` per event: `{1, new id}` when appended, `{0, first id}` when the
  dedupe key was already there (the value of a dedupe key is the id of the entry it guards).
- Both or neither: every key's type is checked before the first write, so that no write below
  can fail half-way (a script is not rolled back on error). The `#!lua` shebang (no `allow-oom`)
  makes Redis refuse the whole script up front when it is out of memory.

`GET` then `XADD` then `SET ... EX` inside the script is the same as `SET NX EX` then `XADD`
(nothing runs in between), and lets the dedupe key hold the entry id for duplicates.
A dedupe key's TTL is never refreshed: Meta's redelivery horizon counts from the first delivery.
"""

from __future__ import annotations

import hashlib

__all__ = ["APPEND_SCRIPT", "APPEND_SCRIPT_SHA", "FORMAT_VERSION"]

FORMAT_VERSION = "1"
"""The `v` field of every entry: bumped if the entry layout ever changes."""

APPEND_SCRIPT = """#!lua
local n = #KEYS / 2
for i = 1, n do
  local dedupe_type = redis.call('TYPE', KEYS[2 * i - 1])['ok']
  if dedupe_type ~= 'none' and dedupe_type ~= 'string' then
    return redis.error_reply('WRONGTYPE inbox key ' .. KEYS[2 * i - 1] .. ' is a ' .. dedupe_type)
  end
  local stream_type = redis.call('TYPE', KEYS[2 * i])['ok']
  if stream_type ~= 'none' and stream_type ~= 'stream' then
    return redis.error_reply('WRONGTYPE inbox key ' .. KEYS[2 * i] .. ' is a ' .. stream_type)
  end
end
local ttl = ARGV[1]
local version = '%(version)s'
local maxlen = tonumber(ARGV[2])
local out = {}
for i = 1, n do
  local dedupe, stream = KEYS[2 * i - 1], KEYS[2 * i]
  local first = redis.call('GET', dedupe)
  if first then
    out[i] = {0, first}
  else
    local id
    local event = ARGV[2 + i]
    if maxlen > 0 then
      id = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'v', version, 'event', event)
    else
      id = redis.call('XADD', stream, '*', 'v', version, 'event', event)
    end
    redis.call('SET', dedupe, id, 'EX', ttl)
    out[i] = {1, id}
  end
end
return out
""" % {"version": FORMAT_VERSION}  # noqa: UP031 (Lua braces would fight str.format)

APPEND_SCRIPT_SHA = hashlib.sha1(APPEND_SCRIPT.encode(), usedforsecurity=False).hexdigest()
"""What EVALSHA names the script by: Redis's own SHA1 of the source."""
