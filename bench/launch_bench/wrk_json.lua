-- wrk script: POST a JSON body read from a file, count non-2xx and failed bodies per thread,
-- and print one JSON line of totals and latency percentiles (microseconds) when done.
-- args: body_file [authorization_header [failure_marker [method]]] (GET sends no body)
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  wrk.method = args[4] or "POST"
  if wrk.method == "" then wrk.method = "POST" end
  if wrk.method ~= "GET" then
    local fh = assert(io.open(args[1], "rb"))
    wrk.body = fh:read("*a")
    fh:close()
    wrk.headers["Content-Type"] = "application/json"
  end
  if args[2] ~= nil and args[2] ~= "" then
    wrk.headers["Authorization"] = args[2]
  end
  marker = args[3]
  if marker == "" then marker = nil end
  non2xx = 0
  bad_body = 0
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  elseif marker ~= nil and body ~= nil and string.find(body, marker, 1, true) then
    bad_body = bad_body + 1
  end
end

function done(summary, latency, requests)
  local n2, bb = 0, 0
  for _, t in ipairs(threads) do
    n2 = n2 + t:get("non2xx")
    bb = bb + t:get("bad_body")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"non2xx":%d,"bad_body":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, n2, bb,
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
