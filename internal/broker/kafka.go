package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// kafkaPublisher produces to one Kafka topic with franz-go's idempotent
// producer (the default): the broker drops the duplicates franz-go's own
// retries create, and records of one partition stay in order across
// retries. Records are keyed by Message.Key, so one key maps to one
// partition and keeps its order; acks come from all in-sync replicas.
type kafkaPublisher struct {
	d      Destination
	client *kgo.Client
}

func openKafka(ctx context.Context, d Destination, dial dialFunc) (*kafkaPublisher, error) {
	client, err := kgo.NewClient(
		kgo.SeedBrokers(d.Addrs...),
		kgo.DefaultProduceTopic(d.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
		kgo.RecordDeliveryTimeout(30*time.Second),
		kgo.UnknownTopicRetries(3),
		kgo.Dialer(func(ctx context.Context, network, host string) (net.Conn, error) {
			return dial(ctx, network, host)
		}),
		kgo.ClientID("concord-broker"),
	)
	if err != nil {
		return nil, permanent(fmt.Errorf("broker: kafka client for %s: %w", d, err))
	}
	if err := kafkaTopicExists(ctx, client, d.Topic); err != nil {
		client.Close()
		return nil, err
	}
	return &kafkaPublisher{d: d, client: client}, nil
}

func kafkaTopicExists(ctx context.Context, client *kgo.Client, topic string) error {
	req := kmsg.NewPtrMetadataRequest()
	t := kmsg.NewMetadataRequestTopic()
	t.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, t)
	resp, err := req.RequestWith(ctx, client)
	if err != nil {
		return fmt.Errorf("broker: kafka metadata for %q: %w", topic, err)
	}
	for _, rt := range resp.Topics {
		if err := kerr.ErrorForCode(rt.ErrorCode); err != nil {
			return classifyKafka(fmt.Errorf("broker: kafka topic %q: %w", topic, err))
		}
	}
	return nil
}

func (p *kafkaPublisher) Publish(ctx context.Context, m Message) error {
	return p.PublishBatch(ctx, []Message{m})
}

func (p *kafkaPublisher) PublishBatch(ctx context.Context, msgs []Message) error {
	if err := validateMessages(msgs); err != nil {
		return err
	}
	recs := make([]*kgo.Record, len(msgs))
	for i, m := range msgs {
		r := &kgo.Record{Value: m.Payload, Headers: make([]kgo.RecordHeader, 0, len(m.Headers)+1)}
		if m.Key != "" {
			r.Key = []byte(m.Key)
		}
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: HeaderID, Value: []byte(m.ID)})
		for k, v := range m.Headers {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
		}
		recs[i] = r
	}
	results := p.client.ProduceSync(ctx, recs...)
	for i, res := range results {
		if res.Err != nil {
			if errors.Is(res.Err, kgo.ErrClientClosed) {
				return fmt.Errorf("%w: %w", ErrClosed, res.Err)
			}
			return classifyKafka(fmt.Errorf("broker: kafka produce %s to %q: %w", msgs[i].ID, p.d.Topic, res.Err))
		}
	}
	return nil
}

// classifyKafka marks non-retriable broker errors permanent, and an
// unknown topic once franz-go's own retries for it ran out.
func classifyKafka(err error) error {
	switch {
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge):
		return permanent(err, ErrTooLarge)
	case errors.Is(err, kerr.UnknownTopicOrPartition):
		return permanent(err)
	}
	var ke *kerr.Error
	if errors.As(err, &ke) && !ke.Retriable {
		return permanent(err)
	}
	return err
}

func (p *kafkaPublisher) Close() error {
	p.client.Close()
	return nil
}
