"""The Lua scripts behind the inbox's account of its entries: replaying, and the unresolved summary.

`REPLAY_SCRIPT` (`Inbox.append_replay`) appends events again without the dedupe check: a replay of
a quarantined item, whose dedupe keys have already seen its events.

- KEYS: one stream per event. ARGV: `ARGV[1]` the approximate MAXLEN (0: no trimming), then
  `ARGV[1+i]` event i as JSON. Returns the new entry ids, in order.
- All or nothing, as the append: every key's type is checked before the first XADD, and the
  `#!lua` shebang makes Redis refuse the whole script up front when it is out of memory.

`SUMMARY_SCRIPT` (`Inbox.unresolved_summary`, run every few seconds per partition for the gauges)
counts one partition's entries older than a cutoff that have no outcome yet, and finds the oldest
unacked entry, without sending any entry back: one round trip, and a read-only script (so it runs
when Redis is out of memory too).

- KEYS[1]: the stream. ARGV: `ARGV[1]` the group, `ARGV[2]` the cutoff id (inclusive),
  `ARGV[3]` the cap on the count.
- Returns `{count, oldest_id or false}`. `count`: entries pending (delivered, never acked) with an
  id up to the cutoff, plus entries after the group's last delivered id up to the cutoff (the
  lag), at most the cap. Without the group (no host started yet) every entry is in the lag.
  Counted a page at a time, so a big backlog never builds one big reply inside Redis.
"""

from __future__ import annotations

import hashlib

from whatsray.inbox.append_script import FORMAT_VERSION

__all__ = ["REPLAY_SCRIPT", "REPLAY_SCRIPT_SHA", "SUMMARY_SCRIPT", "SUMMARY_SCRIPT_SHA"]

REPLAY_SCRIPT = """#!lua
for i = 1, #KEYS do
  local stream_type = redis.call('TYPE', KEYS[i])['ok']
  if stream_type ~= 'none' and stream_type ~= 'stream' then
    return redis.error_reply('WRONGTYPE inbox key ' .. KEYS[i] .. ' is a ' .. stream_type)
  end
end
local version = '%(version)s'
local maxlen = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS do
  if maxlen > 0 then
    out[i] = redis.call('XADD', KEYS[i], 'MAXLEN', '~', maxlen, '*', 'v', version,
      'event', ARGV[1 + i])
  else
    out[i] = redis.call('XADD', KEYS[i], '*', 'v', version, 'event', ARGV[1 + i])
  end
end
return out
""" % {"version": FORMAT_VERSION}  # noqa: UP031 (Lua braces would fight str.format)

SUMMARY_SCRIPT = """#!lua flags=no-writes
local stream, group, cutoff, cap = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local page_size = 1000
local stream_type = redis.call('TYPE', stream)['ok']
if stream_type == 'none' then
  return {0, false}
end
if stream_type ~= 'stream' then
  return redis.error_reply('WRONGTYPE inbox key ' .. stream .. ' is a ' .. stream_type)
end
local last = false
for _, fields in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local name, delivered
  for i = 1, #fields, 2 do
    if fields[i] == 'name' then name = fields[i + 1] end
    if fields[i] == 'last-delivered-id' then delivered = fields[i + 1] end
  end
  if name == group then last = delivered end
end
local count, oldest = 0, false
if last then
  local summary = redis.call('XPENDING', stream, group)
  if tonumber(summary[1]) > 0 then
    oldest = summary[2]
    local start = '-'
    while count < cap do
      local want = math.min(page_size, cap - count)
      local page = redis.call('XPENDING', stream, group, start, cutoff, want)
      count = count + #page
      if #page < want then break end
      start = '(' .. page[#page][1]
    end
  end
end
local start = last and ('(' .. last) or '-'
local first = redis.call('XRANGE', stream, start, '+', 'COUNT', 1)
if #first > 0 then
  if not oldest then oldest = first[1][1] end
  while count < cap do
    local want = math.min(page_size, cap - count)
    local page = redis.call('XRANGE', stream, start, cutoff, 'COUNT', want)
    count = count + #page
    if #page < want then break end
    start = '(' .. page[#page][1]
  end
end
return {count, oldest}
"""


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


REPLAY_SCRIPT_SHA = _sha(REPLAY_SCRIPT)
SUMMARY_SCRIPT_SHA = _sha(SUMMARY_SCRIPT)
