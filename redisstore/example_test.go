package redisstore_test

import (
	"context"
	"log"
	"time"

	"github.com/quotabreaker/quotabreaker/redisstore"
	"github.com/redis/go-redis/v9"
)

// A replica keeps its latches current from the store: a Snapshot at each
// ChangeResync, then the changes as they come. It needs a Redis on
// localhost:6379, so it is compiled but not run.
func ExampleStore_Watch() {
	client := redis.NewClient(&redis.Options{Addr: "localhost:6379", ContextTimeoutEnabled: true})
	defer client.Close()
	store, err := redisstore.New(client, redisstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = store.Watch(ctx, func(ch redisstore.Change) {
		switch ch.Kind {
		case redisstore.ChangeResync:
			snap, err := store.Snapshot(ctx)
			if err != nil {
				log.Print(err) // the next ChangeResync, or a periodic one, retries
				return
			}
			log.Printf("%d latches open", len(snap.Open))
		case redisstore.ChangeOpened:
			log.Printf("%s opened: %s", ch.Scope, ch.Trip.Code)
		case redisstore.ChangeCleared:
			log.Printf("%s reset", ch.Scope)
		case redisstore.ChangeDisconnected:
			log.Print("store unreachable; deciding on local latches")
		}
	})
	if err != nil {
		log.Fatal(err)
	}
}
