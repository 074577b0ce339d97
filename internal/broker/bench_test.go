package broker

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// benchPublish measures confirmed publishes per second three ways: one at
// a time, in batches of 16 (one round of confirms per batch), and from 16
// goroutines at once.
func benchPublish(b *testing.B, p BatchPublisher) {
	payload := make([]byte, 256)
	msg := func(i int64) Message {
		return Message{ID: "b" + strconv.FormatInt(i, 10), Key: "k" + strconv.FormatInt(i%16, 10), Payload: payload}
	}
	var next atomic.Int64
	b.Run("sequential", func(b *testing.B) {
		for b.Loop() {
			if err := p.Publish(b.Context(), msg(next.Add(1))); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("batch16", func(b *testing.B) {
		batch := make([]Message, 16)
		for b.Loop() {
			for i := range batch {
				batch[i] = msg(next.Add(1))
			}
			if err := p.PublishBatch(b.Context(), batch); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(16*b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("concurrent16", func(b *testing.B) {
		var wg sync.WaitGroup
		var left atomic.Int64
		left.Store(int64(b.N))
		for range 16 {
			wg.Go(func() {
				for left.Add(-1) >= 0 {
					if err := p.Publish(b.Context(), msg(next.Add(1))); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}

func BenchmarkPublishRabbitMQ(b *testing.B) {
	f := newRabbit(b)
	benchPublish(b, openTest(b, f.dest(b, "rk"), nil))
}

func BenchmarkPublishNATS(b *testing.B) {
	f := newNATS(b)
	benchPublish(b, openTest(b, f.dest(b, true), nil))
}

func BenchmarkPublishRedis(b *testing.B) {
	f := newRedis(b)
	benchPublish(b, openTest(b, "redis://"+f.addr+"?stream="+f.stream+"&maxlen=100000", nil))
}

func BenchmarkPublishKafka(b *testing.B) {
	addrs := newKafka(b)
	benchPublish(b, openTest(b, "kafka://"+addrs+"?topic=orders", nil))
}
