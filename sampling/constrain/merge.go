package constrain

import (
	"math/big"
	"slices"
)

// merge combines subschemas that must all hold (allOf, or $ref beside other keywords) into
// one schema, for the keywords the compiler supports.
func (c *schemaCompiler) merge(parts []*jv, path string) (*jv, error) {
	var flat []*jv
	if err := c.flatten(parts, path, &flat, 0); err != nil {
		return nil, err
	}
	out := &jv{kind: jObj}
	set := func(k string, v *jv) { out = out.with(k, v) }

	// type: the intersection.
	typeSet := tAll
	typed := false
	for _, p := range flat {
		if p.get("type") == nil {
			continue
		}
		t, err := types(p, path)
		if err != nil {
			return nil, err
		}
		typeSet &= t
		typed = true
	}
	if typed {
		if typeSet == 0 {
			return nil, schemaErr(path, ErrEmptyLanguage, "allOf of schemas of different types")
		}
		list := &jv{kind: jArr}
		for _, name := range []string{"null", "boolean", "number", "integer", "string", "array", "object"} {
			t := typeNames[name]
			if typeSet&t == t && (name != "integer" || typeSet&tNumber == 0) {
				list.arr = append(list.arr, &jv{kind: jStr, s: name})
			}
		}
		set("type", list)
	}

	// enum and const: the values in every list.
	var values []*jv
	hasValues := false
	for _, p := range flat {
		var vs []*jv
		if e := p.get("enum"); e != nil {
			if e.kind != jArr {
				return nil, schemaErr(path, ErrInvalidSchema, "enum must be a list")
			}
			vs = e.arr
		}
		if k := p.get("const"); k != nil {
			vs = []*jv{k}
		}
		if vs == nil {
			continue
		}
		if !hasValues {
			values, hasValues = vs, true
			continue
		}
		values = slices.DeleteFunc(slices.Clone(values), func(v *jv) bool { return !slices.ContainsFunc(vs, v.equal) })
	}
	if hasValues {
		set("enum", &jv{kind: jArr, arr: values})
	}

	// Keywords only one part may carry, or that every part must carry alike.
	for _, k := range []string{"anyOf", "oneOf", "prefixItems", "pattern", "format", "additionalItems"} {
		var v *jv
		for _, p := range flat {
			if x := p.get(k); x != nil {
				if v != nil && !v.equal(x) {
					return nil, schemaErr(path, ErrUnsupported, "allOf with %q in several subschemas", k)
				}
				v = x
			}
		}
		if v != nil {
			set(k, v)
		}
	}

	// Counts: the tightest.
	for _, k := range []struct {
		name  string
		lower bool
	}{{"minLength", true}, {"maxLength", false}, {"minItems", true}, {"maxItems", false}} {
		var best *big.Rat
		var bestV *jv
		for _, p := range flat {
			v := p.get(k.name)
			r, ok := v.rat()
			if v == nil {
				continue
			}
			if !ok {
				return nil, schemaErr(path, ErrInvalidSchema, "%s must be a number", k.name)
			}
			if best == nil || k.lower && r.Cmp(best) > 0 || !k.lower && r.Cmp(best) < 0 {
				best, bestV = r, v
			}
		}
		if bestV != nil {
			set(k.name, bestV)
		}
	}

	// Numeric bounds: the tightest.
	var lo, hi *bound
	for _, p := range flat {
		l, h, err := c.bounds(p, path)
		if err != nil {
			return nil, err
		}
		if l != nil && (lo == nil || l.v.Cmp(lo.v) > 0 || l.v.Cmp(lo.v) == 0 && l.excl) {
			lo = l
		}
		if h != nil && (hi == nil || h.v.Cmp(hi.v) < 0 || h.v.Cmp(hi.v) == 0 && h.excl) {
			hi = h
		}
	}
	for _, b := range []struct {
		b          *bound
		incl, excl string
	}{{lo, "minimum", "exclusiveMinimum"}, {hi, "maximum", "exclusiveMaximum"}} {
		if b.b == nil {
			continue
		}
		k := b.incl
		if b.b.excl {
			k = b.excl
		}
		set(k, &jv{kind: jNum, s: ratJSON(b.b.v)})
	}

	// items: every schema.
	var items []*jv
	for _, p := range flat {
		if it := p.get("items"); it != nil {
			if it.kind == jArr {
				if out.get("prefixItems") != nil {
					return nil, schemaErr(path, ErrUnsupported, "allOf with prefixItems in several subschemas")
				}
				set("prefixItems", it)
				continue
			}
			items = append(items, it)
		}
	}
	if len(items) > 0 {
		set("items", allOf(items))
	}

	// Objects: properties allowed by every part; each with the schemas every part gives it.
	objectPart := false
	var required []string
	var order []string
	for _, p := range flat {
		if p.get("properties") != nil || p.get("additionalProperties") != nil || p.get("required") != nil {
			objectPart = true
		}
		if r := p.get("required"); r != nil {
			if r.kind != jArr {
				return nil, schemaErr(path, ErrInvalidSchema, "required must be a list of strings")
			}
			for _, e := range r.arr {
				if e.kind != jStr {
					return nil, schemaErr(path, ErrInvalidSchema, "required must be a list of strings")
				}
				if !slices.Contains(required, e.s) {
					required = append(required, e.s)
				}
			}
		}
		if ps := p.get("properties"); ps != nil {
			if ps.kind != jObj {
				return nil, schemaErr(path, ErrInvalidSchema, "properties must be an object")
			}
			for _, k := range ps.keys {
				if !slices.Contains(order, k) {
					order = append(order, k)
				}
			}
		}
	}
	if objectPart {
		for _, r := range required {
			if !slices.Contains(order, r) {
				order = append(order, r)
			}
		}
		props := &jv{kind: jObj}
		var req []*jv
		for _, name := range order {
			var schemas []*jv
			allowed := true
			for _, p := range flat {
				if s := p.get("properties").get(name); s != nil {
					schemas = append(schemas, s)
					continue
				}
				switch a := p.get("additionalProperties"); {
				case a == nil:
				case a.kind == jBool && !a.b:
					allowed = false
				default:
					schemas = append(schemas, a)
				}
			}
			isReq := slices.Contains(required, name)
			if !allowed {
				if isReq {
					return nil, schemaErr(path, ErrEmptyLanguage, "required property %q is not allowed by every subschema", name)
				}
				continue
			}
			if len(schemas) == 0 {
				schemas = []*jv{{kind: jBool, b: true}}
			}
			props.keys, props.vals = append(props.keys, name), append(props.vals, allOf(schemas))
			if isReq {
				req = append(req, &jv{kind: jStr, s: name})
			}
		}
		set("properties", props)
		if len(req) > 0 {
			set("required", &jv{kind: jArr, arr: req})
		}
		var addl []*jv
		closed := false
		for _, p := range flat {
			switch a := p.get("additionalProperties"); {
			case a == nil:
			case a.kind == jBool && !a.b:
				closed = true
			case a.kind == jBool:
			default:
				addl = append(addl, a)
			}
		}
		switch {
		case closed:
			set("additionalProperties", &jv{kind: jBool})
		case len(addl) > 0:
			set("additionalProperties", allOf(addl))
		}
	}
	return out, nil
}

// flatten resolves the parts of a merge: true dropped, $ref followed, allOf expanded.
func (c *schemaCompiler) flatten(parts []*jv, path string, out *[]*jv, depth int) error {
	if depth > maxSchemaDepth {
		return schemaErr(path, ErrTooComplex, "allOf nested deeper than %d", maxSchemaDepth)
	}
	for _, p := range parts {
		switch p.kind {
		case jBool:
			if !p.b {
				return schemaErr(path, ErrEmptyLanguage, "the schema false")
			}
			continue
		case jObj:
		default:
			return schemaErr(path, ErrInvalidSchema, "a schema must be an object or a boolean, not %s", p)
		}
		if err := checkKeywords(p, path); err != nil {
			return err
		}
		if r := p.get("$ref"); r != nil {
			if r.kind != jStr {
				return schemaErr(path, ErrInvalidSchema, "$ref must be a string")
			}
			if st := c.refs[r.s]; st != nil && st.busy {
				return schemaErr(path, ErrUnsupported, "$ref %q to an enclosing schema inside allOf", r.s)
			}
			target, err := c.resolve(r.s, path)
			if err != nil {
				return err
			}
			if err := c.flatten([]*jv{target, p.with("$ref", nil)}, path, out, depth+1); err != nil {
				return err
			}
			continue
		}
		if a := p.get("allOf"); a != nil {
			if a.kind != jArr {
				return schemaErr(path, ErrInvalidSchema, "allOf must be a list")
			}
			if err := c.flatten(append([]*jv{p.with("allOf", nil)}, a.arr...), path, out, depth+1); err != nil {
				return err
			}
			continue
		}
		*out = append(*out, p)
	}
	return nil
}

// allOf returns the schema of all of schemas.
func allOf(schemas []*jv) *jv {
	if len(schemas) == 1 {
		return schemas[0]
	}
	return &jv{kind: jObj, keys: []string{"allOf"}, vals: []*jv{{kind: jArr, arr: schemas}}}
}

// ratJSON writes a number with a finite decimal expansion as JSON.
func ratJSON(r *big.Rat) string {
	sign := ""
	if r.Sign() < 0 {
		sign, r = "-", new(big.Rat).Neg(r)
	}
	i, f, err := decimal(r)
	if err != nil {
		return sign + r.FloatString(maxBoundDigits)
	}
	if f != "" {
		return sign + i + "." + f
	}
	return sign + i
}

// disjoint fails unless no value satisfies two of the alternatives of a oneOf, which the
// compiler can then generate as anyOf.
func (c *schemaCompiler) disjoint(branches []*jv, path string) error {
	flat := make([][]*jv, len(branches))
	for i, b := range branches {
		if err := c.flatten([]*jv{b}, path, &flat[i], 0); err != nil {
			return err
		}
	}
	for i := range flat {
		for j := i + 1; j < len(flat); j++ {
			if !c.excludes(flat[i], flat[j]) && !c.excludes(flat[j], flat[i]) {
				return schemaErr(path, ErrUnsupported, "oneOf whose alternatives %d and %d may both hold (make them exclude each other by type, const or enum, or use anyOf)", i, j)
			}
		}
	}
	return nil
}

// excludes reports whether no value satisfies both a and b (each the parts of an allOf),
// by a test that is sure but not complete.
func (c *schemaCompiler) excludes(a, b []*jv) bool {
	ta, tb := kindsOf(a), kindsOf(b)
	if ta&tb == 0 {
		return true
	}
	va, vb := valuesOf(a), valuesOf(b)
	if va != nil && vb != nil && !slices.ContainsFunc(va, func(v *jv) bool { return slices.ContainsFunc(vb, v.equal) }) {
		return true
	}
	if ta&tb != tObject {
		return false
	}
	// Objects: a property both require with values that differ, or one a requires that b
	// does not allow.
	for _, pa := range a {
		r := pa.get("required")
		if r == nil || r.kind != jArr {
			continue
		}
		for _, name := range r.arr {
			if name.kind != jStr {
				continue
			}
			var sa, sb []*jv
			for _, p := range a {
				if s := p.get("properties").get(name.s); s != nil {
					sa = append(sa, s)
				}
			}
			allowed := true
			requiredInB := false
			for _, p := range b {
				if s := p.get("properties").get(name.s); s != nil {
					sb = append(sb, s)
				} else if ad := p.get("additionalProperties"); ad != nil && ad.kind == jBool && !ad.b {
					allowed = false
				}
				if rb := p.get("required"); rb != nil && slices.ContainsFunc(rb.arr, func(x *jv) bool { return x.kind == jStr && x.s == name.s }) {
					requiredInB = true
				}
			}
			if !allowed {
				return true
			}
			if requiredInB {
				xa, xb := valuesOf(sa), valuesOf(sb)
				if xa != nil && xb != nil && !slices.ContainsFunc(xa, func(v *jv) bool { return slices.ContainsFunc(xb, v.equal) }) {
					return true
				}
			}
		}
	}
	return false
}

// kindsOf returns the types the parts of an allOf allow, as far as type, enum and const
// tell.
func kindsOf(parts []*jv) int {
	set := tAll
	for _, p := range parts {
		if p.get("type") != nil {
			if t, err := types(p, ""); err == nil {
				set &= t
			}
		}
	}
	if vs := valuesOf(parts); vs != nil {
		k := 0
		for _, v := range vs {
			k |= kindOf(v)
		}
		set &= k
	}
	return set
}

func kindOf(v *jv) int {
	switch v.kind {
	case jNull:
		return tNull
	case jBool:
		return tBool
	case jNum:
		if r, ok := v.rat(); ok && r.IsInt() {
			return tInteger
		}
		return tNumber
	case jStr:
		return tString
	case jArr:
		return tArray
	}
	return tObject
}

// valuesOf returns the values enum or const allow in the parts of an allOf (the first
// list met), or nil when none restricts them.
func valuesOf(parts []*jv) []*jv {
	for _, p := range parts {
		if k := p.get("const"); k != nil {
			return []*jv{k}
		}
		if e := p.get("enum"); e != nil && e.kind == jArr {
			return e.arr
		}
	}
	return nil
}

// program compiles g once and keeps the result with it.
func (g *Grammar) program() (*program, error) {
	if p := g.prog.Load(); p != nil {
		return p.p, p.err
	}
	p, err := compileGrammar(g)
	r := &progResult{p, err}
	if !g.prog.CompareAndSwap(nil, r) {
		r = g.prog.Load()
	}
	return r.p, r.err
}

type progResult struct {
	p   *program
	err error
}
