// oss-peer: the OSS plugin's test gateway and benchmark peer, on Alibaba
// Cloud's official Go SDK (github.com/aliyun/alibabacloud-oss-go-sdk-v2).
// Test tooling only: built by tests/scripts/install-peer.sh oss.
//
// No OSS emulator exists. `oss-peer gateway` is a FAKE named as such: an
// OSS front for MinIO. It checks every request's OSS V4 signature
// (OSS4-HMAC-SHA256, the Authorization header) by recomputing it with the
// SDK's own signer (signer.SignerV4) from the request as received, and
// answers a request that fails the check with OSS's error document
// (AccessDenied, InvalidAccessKeyId, SignatureDoesNotMatch,
// RequestTimeTooSkewed). A request that passes is forwarded to MinIO
// without its OSS headers, signed with MinIO's key (SigV4, minio-go's
// signer), and MinIO's answer goes back as it is: the wire protocol
// (paths, queries, XML bodies, multipart uploads, ranges, error documents)
// is MinIO's S3, which OSS's API mirrors.
//
// `oss-peer upload|download` is the benchmark peer: the SDK's Uploader and
// GetObject with their defaults, against the gateway.
//
// Usage:
//
//	oss-peer gateway <listen address> <MinIO URL> <MinIO access key> <MinIO secret key> <access key id> <access key secret> <region>
//	oss-peer upload|download <endpoint URL> <access key id> <access key secret> <region> <bucket> <key> [<file>]
//
// The gateway prints `listening on <address>` once it accepts connections,
// and serves GET /.oss-gateway/verified (outside any bucket name OSS
// allows): the number of requests whose signature it checked and passed.
package main

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aliyun/alibabacloud-oss-go-sdk-v2/oss"
	"github.com/aliyun/alibabacloud-oss-go-sdk-v2/oss/credentials"
	"github.com/aliyun/alibabacloud-oss-go-sdk-v2/oss/signer"
	miniosigner "github.com/minio/minio-go/v7/pkg/signer"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "gateway":
		if len(os.Args) != 9 {
			usage()
		}
		gateway(os.Args[2], os.Args[3], os.Args[4], os.Args[5], os.Args[6], os.Args[7], os.Args[8])
	case "upload", "download":
		if len(os.Args) < 8 {
			usage()
		}
		peer(os.Args[1], os.Args[2], os.Args[3], os.Args[4], os.Args[5], os.Args[6], os.Args[7], os.Args[8:])
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: oss-peer gateway <listen address> <MinIO URL> <MinIO access key> <MinIO secret key> <access key id> <access key secret> <region>")
	fmt.Fprintln(os.Stderr, "       oss-peer upload|download <endpoint URL> <access key id> <access key secret> <region> <bucket> <key> [<file>]")
	os.Exit(2)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "oss-peer:", err)
	os.Exit(1)
}

// ---- the gateway ----

type ossError struct {
	XMLName  xml.Name `xml:"Error"`
	Code     string   `xml:"Code"`
	Message  string   `xml:"Message"`
	HostId   string   `xml:"HostId"`
	EC       string   `xml:"EC"`
	Endpoint string   `xml:"Endpoint,omitempty"`
}

func refuse(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("x-oss-request-id", "oss-gateway")
	w.WriteHeader(status)
	body, _ := xml.Marshal(ossError{Code: code, Message: message, HostId: "oss-gateway", EC: "0002-00000000"})
	w.Write([]byte(xml.Header))
	w.Write(body)
}

// authorization is the parsed OSS4-HMAC-SHA256 Authorization header.
type authorization struct {
	accessKey, date, region, product string
	additional                       []string
}

func parseAuthorization(h string) (authorization, bool) {
	var a authorization
	rest, ok := strings.CutPrefix(h, "OSS4-HMAC-SHA256 ")
	if !ok {
		return a, false
	}
	for _, field := range strings.Split(rest, ",") {
		name, value, _ := strings.Cut(strings.TrimSpace(field), "=")
		switch name {
		case "Credential":
			parts := strings.Split(value, "/")
			if len(parts) != 5 || parts[4] != "aliyun_v4_request" {
				return a, false
			}
			a.accessKey, a.date, a.region, a.product = parts[0], parts[1], parts[2], parts[3]
		case "AdditionalHeaders":
			a.additional = strings.Split(value, ";")
		}
	}
	return a, a.accessKey != ""
}

// verify checks the request's signature; it answers the request itself
// and returns false when the check fails.
func verify(w http.ResponseWriter, r *http.Request, accessKey, secret, region string) bool {
	header := r.Header.Get("Authorization")
	if header == "" {
		refuse(w, 403, "AccessDenied", "AccessDenied: the request has no Authorization header (anonymous access is forbidden)")
		return false
	}
	auth, ok := parseAuthorization(header)
	if !ok {
		refuse(w, 400, "InvalidArgument", "Authorization header is invalid: only OSS4-HMAC-SHA256 is accepted")
		return false
	}
	if auth.accessKey != accessKey {
		refuse(w, 403, "InvalidAccessKeyId", "The OSS Access Key Id you provided does not exist in our records.")
		return false
	}
	if auth.region != region || auth.product != "oss" {
		refuse(w, 400, "InvalidArgument", fmt.Sprintf("Invalid signing region in Authorization header: %q (the bucket is in %q)", auth.region, region))
		return false
	}
	signed, err := time.Parse("20060102T150405Z", r.Header.Get("x-oss-date"))
	if err != nil || !strings.HasPrefix(r.Header.Get("x-oss-date"), auth.date) {
		refuse(w, 403, "AccessDenied", "x-oss-date is missing or does not match the Credential's date")
		return false
	}
	if skew := time.Since(signed); skew > 15*time.Minute || skew < -15*time.Minute {
		refuse(w, 403, "RequestTimeTooSkewed", "The difference between the request time and the current time is too large.")
		return false
	}

	// Path-style: /<bucket>/<key>. The SDK's signer takes both unescaped
	// and escapes them itself; the query is canonicalized from its decoded
	// parameters, as a server must.
	bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		refuse(w, 400, "InvalidArgument", "the query string cannot be parsed")
		return false
	}
	u := *r.URL
	u.RawQuery = query.Encode()
	check, _ := http.NewRequest(r.Method, u.String(), nil)
	check.Header = r.Header.Clone()
	check.Header.Del("Authorization")
	ctx := &signer.SigningContext{
		Product:           oss.Ptr("oss"),
		Region:            oss.Ptr(region),
		Request:           check,
		Credentials:       &credentials.Credentials{AccessKeyID: accessKey, AccessKeySecret: secret},
		AdditionalHeaders: auth.additional,
		Time:              signed,
	}
	if bucket != "" {
		ctx.Bucket = oss.Ptr(bucket)
	}
	if key != "" {
		ctx.Key = oss.Ptr(key)
	}
	if err := (&signer.SignerV4{}).Sign(context.Background(), ctx); err != nil {
		refuse(w, 500, "InternalError", err.Error())
		return false
	}
	if check.Header.Get("Authorization") != header {
		refuse(w, 403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your key and signing method.")
		return false
	}
	return true
}

func gateway(listen, minio, minioKey, minioSecret, accessKey, secret, region string) {
	upstream, err := url.Parse(minio)
	if err != nil {
		fail(err)
	}
	var verified atomic.Int64
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			out := pr.Out
			out.Host = upstream.Host
			for name := range out.Header {
				lower := strings.ToLower(name)
				if lower == "authorization" || strings.HasPrefix(lower, "x-oss-") {
					out.Header.Del(name)
				}
			}
			out.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
			*out = *miniosigner.SignV4(*out, minioKey, minioSecret, "", "us-east-1")
		},
		FlushInterval: -1,
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/.oss-gateway/verified" {
			fmt.Fprintln(w, verified.Load())
			return
		}
		if !verify(w, r, accessKey, secret, region) {
			return
		}
		verified.Add(1)
		proxy.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		fail(err)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	fail((&http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}).Serve(ln))
}

// ---- the benchmark peer ----

func peer(op, endpoint, accessKey, secret, region, bucket, key string, rest []string) {
	cfg := oss.LoadDefaultConfig().
		WithCredentialsProvider(credentials.NewStaticCredentialsProvider(accessKey, secret)).
		WithRegion(region).
		WithEndpoint(endpoint).
		WithUsePathStyle(true).
		// MinIO computes no OSS CRC-64.
		WithDisableUploadCRC64Check(true).
		WithDisableDownloadCRC64Check(true)
	client := oss.NewClient(cfg)
	ctx := context.Background()
	switch op {
	case "upload":
		if len(rest) < 1 {
			fail(fmt.Errorf("upload needs a file"))
		}
		request := &oss.PutObjectRequest{Bucket: oss.Ptr(bucket), Key: oss.Ptr(key)}
		if _, err := client.NewUploader().UploadFile(ctx, request, rest[0]); err != nil {
			fail(err)
		}
	case "download":
		result, err := client.GetObject(ctx, &oss.GetObjectRequest{Bucket: oss.Ptr(bucket), Key: oss.Ptr(key)})
		if err != nil {
			fail(err)
		}
		n, err := io.Copy(io.Discard, result.Body)
		if err != nil {
			fail(err)
		}
		fmt.Println(n)
	}
}
