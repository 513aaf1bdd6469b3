// azblob-peer: the benchmark peer of the ABS plugin. It uploads a file to
// or downloads a blob from a Blob service (Azurite) with Microsoft's Go SDK
// (azblob), the client library upstream's Go sidecar uses, with its
// defaults. Test tooling only: built by tests/scripts/install-peer.sh azblob,
// run by host/plugin-host/benches/store_throughput.rs.
//
// Usage: azblob-peer upload|download <service URL> <account> <key> <container> <blob> [<file>]
// A download prints the number of bytes read.
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
)

func main() {
	if len(os.Args) < 7 {
		fmt.Fprintln(os.Stderr, "usage: azblob-peer upload|download <service URL> <account> <key> <container> <blob> [<file>]")
		os.Exit(2)
	}
	op, url, account, key, container, blob := os.Args[1], os.Args[2], os.Args[3], os.Args[4], os.Args[5], os.Args[6]
	cred, err := azblob.NewSharedKeyCredential(account, key)
	if err != nil {
		fail(err)
	}
	client, err := azblob.NewClientWithSharedKeyCredential(url, cred, nil)
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	switch op {
	case "upload":
		if len(os.Args) < 8 {
			fail(fmt.Errorf("upload needs a file"))
		}
		f, err := os.Open(os.Args[7])
		if err != nil {
			fail(err)
		}
		defer f.Close()
		if _, err := client.UploadFile(ctx, container, blob, f, nil); err != nil {
			fail(err)
		}
	case "download":
		resp, err := client.DownloadStream(ctx, container, blob, nil)
		if err != nil {
			fail(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil {
			fail(err)
		}
		fmt.Println(n)
	default:
		fail(fmt.Errorf("unknown operation %q", op))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "azblob-peer:", err)
	os.Exit(1)
}
