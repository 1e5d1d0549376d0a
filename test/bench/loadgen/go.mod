module modelgate.dev/bench/loadgen

go 1.22
