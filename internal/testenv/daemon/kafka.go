package daemon

import (
	"encoding/binary"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Kafka is an in-process Kafka cluster (franz-go's kfake, one broker) on
// loopback whose connections can lose produce responses: the broker
// applies the produce request, and then, instead of the response, the
// client's connection is closed. To the producer that is a request whose
// outcome is unknown, the case a retry must not duplicate.
type Kafka struct {
	*kfake.Cluster
	// Addrs is the comma-separated bootstrap list (for kafka:// URLs).
	Addrs string

	mu        sync.Mutex
	dropNext  int       // produce responses still to swallow
	dropUntil time.Time // swallow every produce response until then
	produces  int       // produce requests received
	dropped   int       // produce responses swallowed
}

// NewKafka starts the cluster with topics of partitions partitions each;
// it is closed when the test ends.
func NewKafka(t testing.TB, partitions int32, topics ...string) *Kafka {
	t.Helper()
	k := &Kafka{}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...),
		kfake.ListenFn(func(network, address string) (net.Listener, error) {
			ln, err := net.Listen(network, address)
			if err != nil {
				return nil, err
			}
			return &faultListener{Listener: ln, k: k}, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	k.Cluster = c
	k.Addrs = strings.Join(c.ListenAddrs(), ",")
	return k
}

// DropProduceResponses makes the next n produce responses vanish (each
// request is applied, then its connection closed).
func (k *Kafka) DropProduceResponses(n int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.dropNext += n
}

// DropProduceResponsesFor makes every produce response vanish for d.
func (k *Kafka) DropProduceResponsesFor(d time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.dropUntil = time.Now().Add(d)
}

// Stats returns the produce requests received and the responses swallowed.
func (k *Kafka) Stats() (produces, dropped int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.produces, k.dropped
}

// Records returns how many records topic holds: the sum of its partitions'
// end offsets (with a non-transactional producer every offset is a record).
func (k *Kafka) Records(t testing.TB, topic string) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	meta := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	meta.Topics = append(meta.Topics, mt)
	mresp, err := meta.RequestWith(t.Context(), cl)
	if err != nil || len(mresp.Topics) != 1 {
		t.Fatalf("metadata for %s: %v", topic, err)
	}
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	for _, p := range mresp.Topics[0].Partitions {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = p.Partition, -1 // latest
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(t.Context(), cl)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				t.Fatalf("list offsets %s/%d: %v", topic, rp.Partition, err)
			}
			n += rp.Offset
		}
	}
	return n
}

func (k *Kafka) sawProduce() {
	k.mu.Lock()
	k.produces++
	k.mu.Unlock()
}

// shouldDrop decides the fate of one produce response.
func (k *Kafka) shouldDrop() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	drop := k.dropNext > 0 || time.Now().Before(k.dropUntil)
	if k.dropNext > 0 {
		k.dropNext--
	}
	if drop {
		k.dropped++
	}
	return drop
}

type faultListener struct {
	net.Listener
	k *Kafka
}

func (l *faultListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &faultConn{Conn: c, k: l.k, produce: map[int32]bool{}}, nil
}

// faultConn is the broker's side of a client connection. It follows the
// request frames it reads (size, api key, version, correlation id, ...)
// to learn which correlation ids are produce requests, and looks at the
// correlation id of each response frame it writes.
type faultConn struct {
	net.Conn
	k *Kafka

	mu      sync.Mutex
	hdr     []byte // the current request frame's first 12 bytes
	skip    int    // bytes of the current request frame still to pass
	produce map[int32]bool
}

func (c *faultConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.follow(p[:n])
	return n, err
}

func (c *faultConn) follow(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(b) > 0 {
		if c.skip > 0 {
			k := min(c.skip, len(b))
			c.skip -= k
			b = b[k:]
			continue
		}
		k := min(12-len(c.hdr), len(b))
		c.hdr = append(c.hdr, b[:k]...)
		b = b[k:]
		if len(c.hdr) < 12 {
			return
		}
		size := int(binary.BigEndian.Uint32(c.hdr[0:4]))
		key := int16(binary.BigEndian.Uint16(c.hdr[4:6]))
		corr := int32(binary.BigEndian.Uint32(c.hdr[8:12]))
		if key == int16(kmsg.Produce) {
			c.produce[corr] = true
			c.k.sawProduce()
		}
		c.skip = size - 8
		c.hdr = c.hdr[:0]
	}
}

// Write passes response frames on, except a produce response chosen to
// vanish: the connection is closed instead. kfake writes one whole frame
// per call.
func (c *faultConn) Write(p []byte) (int, error) {
	if len(p) >= 8 {
		corr := int32(binary.BigEndian.Uint32(p[4:8]))
		c.mu.Lock()
		isProduce := c.produce[corr]
		delete(c.produce, corr)
		c.mu.Unlock()
		if isProduce && c.k.shouldDrop() {
			c.Conn.Close()
			return 0, net.ErrClosed
		}
	}
	return c.Conn.Write(p)
}
