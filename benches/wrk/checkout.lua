-- wrk script: POST /checkout with random users and random items of the
-- active sale, as benches/compare.sh runs it:
--
--   wrk -t1 -c64 -d8s -s benches/wrk/checkout.lua http://127.0.0.1:PORT -- SALE_ID ITEMS USERS
--
-- SALE_ID: the active sale's id (GET /sales/active), ITEMS: its item count
-- (items are SALE_ID-0 .. SALE_ID-(ITEMS-1)), USERS: how many distinct user
-- ids to draw from (u1 .. uUSERS; keep it under --users-per-sale-max).
-- Every request carries an empty body with Content-Length: 0.

local sale_id = nil
local items = 10000
local users = 1000000
local thread_counter = 0

function setup(thread)
  thread_counter = thread_counter + 1
  thread:set("thread_number", thread_counter)
end

function init(args)
  sale_id = args[1]
  if sale_id == nil then
    error("usage: wrk ... -s checkout.lua URL -- SALE_ID [ITEMS] [USERS]")
  end
  items = tonumber(args[2] or "10000")
  users = tonumber(args[3] or "1000000")
  -- A different sequence per thread and per run.
  math.randomseed(os.time() * 1000 + (thread_number or 0))
end

function request()
  local user = math.random(1, users)
  local item = math.random(0, items - 1)
  local path = "/checkout?user_id=u" .. user .. "&id=" .. sale_id .. "-" .. item
  return wrk.format("POST", path, nil, "")
end
