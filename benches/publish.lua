-- wrk -t2 -c32 -d10s --latency -s benches/publish.lua http://127.0.0.1:PORT/publish
wrk.method = "POST"
wrk.body   = "topic=other&data=hello%20world"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
