-- wrk script: POST /check for keys spread uniformly over KEYS keys
-- (environment variable, default 1000) on the endpoint in ENDPOINT
-- (default: the default rule), with the tier in TIER and the cost in COST
-- when set. loadgen (loadtests/src) sends the same bodies.
local keys = tonumber(os.getenv("KEYS") or "1000")
local endpoint = os.getenv("ENDPOINT")
local tier = os.getenv("TIER")
local cost = tonumber(os.getenv("COST") or "")
local counter = 0

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
  counter = counter + 1
  local key = "user:" .. (counter % keys)
  local body
  if endpoint then
    body = string.format('{"key":"%s","endpoint":"%s"', key, endpoint)
  else
    body = string.format('{"key":"%s"', key)
  end
  if tier then
    body = body .. string.format(',"tier":"%s"', tier)
  end
  if cost then
    body = body .. string.format(',"cost":%d', cost)
  end
  body = body .. "}"
  return wrk.format(nil, "/check", nil, body)
end

local statuses = {}
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

done = function(summary, latency, requests)
  io.write(string.format("requests: %d, errors: %d\n", summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
  for _, p in ipairs({50, 90, 99, 99.9}) do
    io.write(string.format("latency p%s: %.3f ms\n", p, latency:percentile(p) / 1000))
  end
end
