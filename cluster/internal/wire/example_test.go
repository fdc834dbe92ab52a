package wire_test

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster/internal/wire"
)

func Example() {
	s, err := bus.NewSignal("order.created", "/shop", map[string]int{"id": 42},
		bus.WithID("order-42"),
		bus.WithSubject("Bestellung für Zoë"),
		bus.WithTime(time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)),
		bus.WithExtension("priority", 2))
	if err != nil {
		panic(err)
	}
	msg, err := wire.Encode(s, wire.DefaultPrefix)
	if err != nil {
		panic(err)
	}
	fmt.Println("subject:", msg.Subject)
	keys := make([]string, 0, len(msg.Header))
	for k := range msg.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Printf("%s: %s\n", k, msg.Header.Get(k))
	}
	fmt.Printf("body: %s\n", msg.Data)

	got, err := wire.Decode(msg)
	if err != nil {
		panic(err)
	}
	fmt.Println("decoded:", got.ID, got.Subject, got.Extensions["priority"])

	_, err = wire.Decode(&nats.Msg{Subject: "signals.x", Data: []byte("hello")})
	fmt.Println("plain message:", wire.Reason(err), errors.Is(err, wire.ErrNotCloudEvent))
	// Output:
	// subject: signals.order.created
	// Nats-Msg-Id: order-42
	// ce-id: order-42
	// ce-priority: 2
	// ce-source: /shop
	// ce-specversion: 1.0
	// ce-subject: Bestellung%20f%C3%BCr%20Zo%C3%AB
	// ce-time: 2024-05-06T07:08:09Z
	// ce-type: order.created
	// content-type: application/json
	// body: {"id":42}
	// decoded: order-42 Bestellung für Zoë 2
	// plain message: not_cloudevent true
}
