package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/xborder/xborder/adapters"
	"github.com/xborder/xborder/adapters/file"
	"github.com/xborder/xborder/gateway/client"
	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/pki"
	"github.com/xborder/xborder/gateway/wire"
)

// newReceive is a push-mode recipient (PROTOCOL §4 https): it serves an
// mTLS endpoint that only the gateway's certificate may call, decrypts and
// verifies each delivery, keeps the envelope in a folder (atomically, named
// by delivery_id, so a repeated push is idempotent) and prints a JSON line
// of ids and digests (never the message's content).
// It is the sample recipient of docker-compose.yml and a model for
// participants' own endpoints.
func newReceive(stdout io.Writer) *cobra.Command {
	var as, pkiDir, listen, out string
	c := &cobra.Command{
		Use:   "receive --as ID --listen ADDR --out DIR [--pki DIR]",
		Short: "Run a push-mode recipient endpoint for participant ID",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			me, err := client.LoadIdentity(pkiDir, as)
			if err != nil {
				return err
			}
			keys, err := gatewaySigningKeys(filepath.Join(pkiDir, pki.GatewayDir))
			if err != nil {
				return err
			}
			drop, err := file.New(out)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
			h := &receiver{me: me, keys: keys, drop: drop, out: json.NewEncoder(stdout), log: log}
			srv := &http.Server{
				Addr:    listen,
				Handler: h,
				TLSConfig: &tls.Config{
					MinVersion:   tls.VersionTLS13,
					Certificates: []tls.Certificate{me.TLS},
					ClientAuth:   tls.RequireAndVerifyClientCert,
					ClientCAs:    me.Roots,
				},
				ReadHeaderTimeout: 5 * time.Second,
				ReadTimeout:       30 * time.Second,
				WriteTimeout:      30 * time.Second,
				MaxHeaderBytes:    16 << 10,
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go func() {
				<-ctx.Done()
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(sctx)
			}()
			log.Info("receiving", "as", as, "listen", listen, "out", drop.Dir())
			if err := srv.ListenAndServeTLS("", ""); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	c.Flags().StringVar(&as, "as", "", "participant id whose keys and certificate to use")
	c.Flags().StringVar(&pkiDir, "pki", "certs/dev", "PKI folder (ca.crt, <ID>/, gateway/sign.pub.jwk)")
	c.Flags().StringVar(&listen, "listen", "127.0.0.1:8444", "address to serve on")
	c.Flags().StringVar(&out, "out", "received", "folder for the verified envelopes")
	_ = c.MarkFlagRequired("as")
	_ = c.RegisterFlagCompletionFunc("as", completeParticipants)
	return c
}

// gatewaySigningKeys reads the gateway's current and earlier public signing keys.
func gatewaySigningKeys(dir string) (map[string]*envelope.PublicKey, error) {
	paths, _ := filepath.Glob(filepath.Join(dir, "sign.*pub.jwk"))
	keys := map[string]*envelope.PublicKey{}
	for _, p := range paths {
		k, err := envelope.LoadPublicJWK(p)
		if err != nil {
			return nil, err
		}
		keys[k.KID()] = k
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("no gateway signing key in %s", dir)
	}
	return keys, nil
}

type receiver struct {
	me   *client.Identity
	keys map[string]*envelope.PublicKey
	drop *file.Drop
	out  *json.Encoder
	log  *slog.Logger
}

func (h *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != pki.GatewayCN {
		http.Error(w, "only the gateway delivers here", http.StatusForbidden)
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/jose" {
		http.Error(w, "application/jose expected", http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 8<<20))
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	jws, err := envelope.Decrypt(body, []*envelope.PrivateKey{h.me.Enc}, envelope.Profile{})
	if err != nil {
		http.Error(w, "cannot decrypt", http.StatusBadRequest)
		return
	}
	payload, _, err := envelope.Verify(jws, envelope.TypDelivery, func(kid string) (*envelope.PublicKey, bool) {
		k, ok := h.keys[kid]
		return k, ok
	}, envelope.Profile{})
	if err != nil {
		http.Error(w, "signature invalid", http.StatusBadRequest)
		return
	}
	var d wire.DeliveryPayload
	if err := json.Unmarshal(payload, &d); err != nil || d.DeliveryID != r.Header.Get("Idempotency-Key") {
		http.Error(w, "delivery_id and Idempotency-Key differ", http.StatusBadRequest)
		return
	}
	msgID, _ := d.Message["id"].(string)
	if err := h.drop.Deliver(r.Context(), adapters.Delivery{ID: d.DeliveryID, Recipient: h.me.ID, MessageID: msgID, Envelope: body}); err != nil {
		h.log.Error("cannot keep a delivery", "delivery_id", d.DeliveryID, "error", err)
		http.Error(w, "cannot store", http.StatusServiceUnavailable)
		return
	}
	// Ids and digests only: the log of a sample recipient (docker logs)
	// must not carry names or birth dates. The verified envelope is kept in
	// --out for whoever is entitled to open it.
	sum := sha256.Sum256(body)
	from, _ := d.Message["from"].(string)
	typ, _ := d.Message["type"].(string)
	purpose, _ := d.Message["purpose"].(string)
	file, _ := h.drop.Path(d.DeliveryID)
	_ = h.out.Encode(map[string]any{"delivery_id": d.DeliveryID, "message_id": msgID, "from": from, "type": typ,
		"purpose": purpose, "envelope_sha256": hex.EncodeToString(sum[:]), "file": file, "provenance": d.Provenance})
	w.WriteHeader(http.StatusNoContent)
}
