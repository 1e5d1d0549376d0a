// loadgen drives an HTTPS endpoint over HTTP/2 with a client certificate, the
// way a workload calls the gateway, and prints one JSON object with latency
// percentiles, throughput and answers by status.
//
// Closed loop (-c requests in flight, spread over -conns connections) or open
// loop (-rate requests per second; latency is measured from the time each
// request was due, so a stalled server cannot hide its queueing).
//
//	loadgen -url https://127.0.0.1:8443/v1/chat/completions -ca ca.pem \
//	  -cert svid.pem -key svid.key -body body.json -c 32 -conns 4 -d 10s
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

type sample struct {
	totalUs int64
	ttfbUs  int64
	status  int
	code    string // x-modelgate-error of a refusal
	err     string
	proto   int
}

type summary struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

type result struct {
	Requests    int            `json:"requests"`
	Seconds     float64        `json:"seconds"`
	RPS         float64        `json:"rps"`
	LatencyMs   summary        `json:"latency_ms"`
	TtfbMs      summary        `json:"ttfb_ms"`
	Status      map[string]int `json:"status"`
	Codes       map[string]int `json:"codes"`
	Errors      map[string]int `json:"errors"`
	Dropped     int64          `json:"dropped"`
	HTTP2       int            `json:"http2"`
	Connections int            `json:"connections"`
}

func main() {
	url := flag.String("url", "", "target URL")
	caFile := flag.String("ca", "", "CA bundle (PEM) that signed the server certificate")
	certFile := flag.String("cert", "", "client certificate (PEM)")
	keyFile := flag.String("key", "", "client key (PEM)")
	bodyFile := flag.String("body", "", "request body file (JSON)")
	serverName := flag.String("servername", "localhost", "TLS server name")
	concurrency := flag.Int("c", 1, "requests in flight (closed loop), or the most outstanding requests (open loop)")
	conns := flag.Int("conns", 1, "HTTP/2 connections")
	rate := flag.Float64("rate", 0, "requests per second (open loop); 0 = closed loop")
	duration := flag.Duration("d", 5*time.Second, "measured duration")
	warmup := flag.Duration("warmup", time.Second, "unmeasured warm-up before the measurement")
	timeout := flag.Duration("timeout", 30*time.Second, "per-request timeout")
	flag.Parse()
	if *url == "" || *caFile == "" || *certFile == "" || *keyFile == "" || *bodyFile == "" {
		fail("-url, -ca, -cert, -key and -body are required")
	}
	if *concurrency < 1 || *conns < 1 {
		fail("-c and -conns must be at least 1")
	}
	body, err := os.ReadFile(*bodyFile)
	check(err)
	clients := make([]*http.Client, *conns)
	for i := range clients {
		clients[i] = newClient(*caFile, *certFile, *keyFile, *serverName, *timeout)
	}

	run := func(d time.Duration, record bool) ([]sample, time.Duration, int64) {
		if *rate > 0 {
			return openLoop(clients, *url, body, *rate, *concurrency, d, record)
		}
		return closedLoop(clients, *url, body, *concurrency, d, record)
	}
	if *warmup > 0 {
		run(*warmup, false)
	}
	// Markers on stderr let a caller sample process counters over the measured part only.
	fmt.Fprintln(os.Stderr, "measuring")
	samples, elapsed, dropped := run(*duration, true)
	fmt.Fprintln(os.Stderr, "measured")
	out := summarise(samples, elapsed)
	out.Dropped = dropped
	out.Connections = *conns
	enc := json.NewEncoder(os.Stdout)
	check(enc.Encode(out))
}

func newClient(caFile, certFile, keyFile, serverName string, timeout time.Duration) *http.Client {
	caPEM, err := os.ReadFile(caFile)
	check(err)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		fail("no certificate in " + caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	check(err)
	// One transport per connection: net/http multiplexes every request of a
	// transport over a single HTTP/2 connection to the host.
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: serverName},
		ForceAttemptHTTP2:   true,
		DisableCompression:  true,
		MaxIdleConnsPerHost: 1,
	}
	return &http.Client{Transport: tr, Timeout: timeout}
}

func do(c *http.Client, url string, body []byte, start time.Time) sample {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	check(err)
	req.Header.Set("content-type", "application/json")
	res, err := c.Do(req)
	if err != nil {
		return sample{totalUs: since(start), err: shortError(err)}
	}
	ttfb := since(start)
	_, err = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	s := sample{totalUs: since(start), ttfbUs: ttfb, status: res.StatusCode, proto: res.ProtoMajor}
	if err != nil {
		s.err = shortError(err)
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		s.code = res.Header.Get("x-modelgate-error")
	}
	return s
}

func closedLoop(clients []*http.Client, url string, body []byte, n int, d time.Duration, record bool) ([]sample, time.Duration, int64) {
	var mu sync.Mutex
	var all []sample
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c := clients[w%len(clients)]
			var mine []sample
			for time.Now().Before(deadline) {
				s := do(c, url, body, time.Now())
				if record {
					mine = append(mine, s)
				}
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	return all, time.Since(start), 0
}

func openLoop(clients []*http.Client, url string, body []byte, rate float64, maxOutstanding int, d time.Duration, record bool) ([]sample, time.Duration, int64) {
	var mu sync.Mutex
	var all []sample
	var wg sync.WaitGroup
	var dropped int64
	slots := make(chan struct{}, maxOutstanding)
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	total := int(math.Round(rate * d.Seconds()))
	for i := 0; i < total; i++ {
		due := start.Add(time.Duration(i) * interval)
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		}
		select {
		case slots <- struct{}{}:
		default:
			// The client would have to queue: count it instead of waiting, so the schedule holds.
			atomic.AddInt64(&dropped, 1)
			continue
		}
		wg.Add(1)
		go func(i int, due time.Time) {
			defer wg.Done()
			s := do(clients[i%len(clients)], url, body, due)
			<-slots
			if record {
				mu.Lock()
				all = append(all, s)
				mu.Unlock()
			}
		}(i, due)
	}
	wg.Wait()
	return all, time.Since(start), dropped
}

func summarise(samples []sample, elapsed time.Duration) result {
	r := result{Requests: len(samples), Seconds: elapsed.Seconds(), Status: map[string]int{}, Codes: map[string]int{}, Errors: map[string]int{}}
	if elapsed > 0 {
		r.RPS = float64(len(samples)) / elapsed.Seconds()
	}
	var totals, ttfbs []int64
	for _, s := range samples {
		if s.err != "" {
			r.Errors[s.err]++
		}
		if s.status != 0 {
			r.Status[strconv.Itoa(s.status)]++
			ttfbs = append(ttfbs, s.ttfbUs)
		}
		if s.code != "" {
			r.Codes[s.code]++
		}
		if s.proto == 2 {
			r.HTTP2++
		}
		totals = append(totals, s.totalUs)
	}
	r.LatencyMs = percentiles(totals)
	r.TtfbMs = percentiles(ttfbs)
	return r
}

func percentiles(us []int64) summary {
	if len(us) == 0 {
		return summary{}
	}
	sort.Slice(us, func(i, j int) bool { return us[i] < us[j] })
	at := func(p float64) float64 {
		i := int(math.Ceil(p/100*float64(len(us)))) - 1
		if i < 0 {
			i = 0
		}
		return float64(us[i]) / 1000
	}
	var sum int64
	for _, v := range us {
		sum += v
	}
	return summary{P50: at(50), P90: at(90), P99: at(99), Max: float64(us[len(us)-1]) / 1000, Mean: float64(sum) / float64(len(us)) / 1000}
}

func since(t time.Time) int64 { return time.Since(t).Microseconds() }

func shortError(err error) string {
	msg := err.Error()
	if len(msg) > 120 {
		msg = msg[:120]
	}
	return msg
}

func check(err error) {
	if err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "loadgen:", msg)
	os.Exit(2)
}
