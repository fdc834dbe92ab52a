// Package client is what a NATS client that is not a cluster member needs to
// speak to a signalbus cluster: the wire codec, the subjects and the name of
// the durable stream. A program that only publishes into the bus or reads
// from it (the signalbus pub and sub commands, an integration in another
// service) uses it over a plain nats.go connection: it sends no heartbeats,
// takes no part in membership and so does not count towards a cluster's
// ExpectedSize.
//
//	nc, _ := nats.Connect("nats://127.0.0.1:4222")
//	sig, _ := bus.NewSignal("order.created", "/shop", map[string]any{"id": 1})
//	msg, _ := client.Encode(sig, client.DefaultPrefix) // binary mode, Nats-Msg-Id = id
//	js, _ := jetstream.New(nc)
//	_, err := js.PublishMsg(ctx, msg) // durable mode: acknowledged once stored
//
// and, on the receiving side,
//
//	filters, exact, _ := client.SubjectFilters(client.DefaultPrefix, "order.**")
//	... subscribe to each filter; for every message:
//	signals, err := client.Decode(msg) // binary, structured or a protobuf batch
//	// when !exact, keep only the signals whose type the pattern matches
//
// It wraps the cluster's own codec (cluster/internal/wire), so its messages
// are exactly those a node writes and reads; it imports neither the cluster
// package nor the NATS server, so a client does not link an embedded server.
package client
