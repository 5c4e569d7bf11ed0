package edge

import (
	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/edge/validate"
)

// validateKey identifies the DNSSEC validation state in the pool: the
// dnssec section and the state of the trust anchor files it names, so
// that a reload keeps the validator with the DNSKEY and DS sets it holds
// and keeps writing the same audit log, unless the section or an anchor
// file changed.
type validateKey struct{ spec, files string }

// buildValidate takes the validation state from the pool and binds this
// generation's chain to it: the validator fetches DNSKEY and DS sets
// through the stage's next handler (forward) of the latest generation
// still alive.
func buildValidate(b *chainBuild) (pipeline.Middleware, error) {
	cfg := b.g.cfg.DNSSEC
	if !cfg.On() {
		return nil, nil
	}
	v, _, err := take(b.g.parts, validateKey{spec: jsonKey(cfg), files: anchorFileStamps(cfg)}, func() (*validate.Validation, func() error, error) {
		v, err := validate.New(cfg, nil)
		if err != nil {
			return nil, nil, err
		}
		return v, v.Close, nil
	})
	if err != nil {
		return nil, err
	}
	if err := v.Register(b.g.metrics); err != nil {
		return nil, err
	}
	mw, unbind := v.Bind()
	b.onClose(unbind)
	// A query signed with a key dnsedge does not hold is relayed with
	// its answer unchanged (RFC 8945 §5.5): validation would change it.
	return skipForeignTSIG(mw), nil
}

func anchorFileStamps(cfg validate.Config) string {
	var files string
	for _, f := range cfg.AnchorFiles() {
		files += f + "=" + fileStamp(f) + ";"
	}
	return files
}

// trustKey is what the answers in the cache were validated against: off
// when validation is, else the dnssec section but for its audit log, and
// the state of its anchor files. The cache is keyed on it too: a reload
// that turns validation on, or changes the anchors, must not go on
// serving answers cached under other rules (authentic or not).
func trustKey(cfg validate.Config) string {
	if !cfg.On() {
		return "off"
	}
	cfg.AuditLog = validate.AuditConfig{}
	return jsonKey(cfg) + anchorFileStamps(cfg)
}
