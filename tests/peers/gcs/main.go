// gcs-peer: the benchmark peer of the GCS plugin. It uploads a file to or
// downloads an object from a GCS JSON API endpoint (fake-gcs-server) with
// Google's Go client (cloud.google.com/go/storage), the client library
// upstream's Go sidecar uses, with its defaults (16 MiB resumable chunks)
// and no authentication (the emulator's mode). Test tooling only: built by
// tests/scripts/install-peer.sh gcs, run by
// host/plugin-host/benches/store_throughput.rs.
//
// Usage: gcs-peer upload|download <endpoint> <bucket> <object> [<file>]
// A download prints the number of bytes read.
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"cloud.google.com/go/storage"
	"google.golang.org/api/option"
)

func main() {
	if len(os.Args) < 5 {
		fmt.Fprintln(os.Stderr, "usage: gcs-peer upload|download <endpoint> <bucket> <object> [<file>]")
		os.Exit(2)
	}
	op, endpoint, bucket, object := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	ctx := context.Background()
	client, err := storage.NewClient(ctx,
		option.WithEndpoint(endpoint+"/storage/v1/"),
		option.WithoutAuthentication())
	if err != nil {
		fail(err)
	}
	defer client.Close()
	obj := client.Bucket(bucket).Object(object)
	switch op {
	case "upload":
		if len(os.Args) < 6 {
			fail(fmt.Errorf("upload needs a file"))
		}
		f, err := os.Open(os.Args[5])
		if err != nil {
			fail(err)
		}
		defer f.Close()
		w := obj.NewWriter(ctx)
		if _, err := io.Copy(w, f); err != nil {
			fail(err)
		}
		if err := w.Close(); err != nil {
			fail(err)
		}
	case "download":
		r, err := obj.NewReader(ctx)
		if err != nil {
			fail(err)
		}
		defer r.Close()
		n, err := io.Copy(io.Discard, r)
		if err != nil {
			fail(err)
		}
		fmt.Println(n)
	default:
		fail(fmt.Errorf("unknown operation %q", op))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gcs-peer:", err)
	os.Exit(1)
}
