// A small SunPKCS11 client, run by tests/tests/java.rs: loads FerroHSM from a
// provider config (args[0]) with the user PIN (args[1]), then, with the keys
// keytool made ("ec" and "rsa" aliases), signs with the token and verifies in
// software, encrypts in software and decrypts with the token, and encrypts
// and decrypts with a token AES key. Prints one "ok <what>" line per check and
// exits non-zero at the first failure.
import java.security.*;
import java.security.cert.Certificate;
import java.util.Arrays;
import javax.crypto.Cipher;
import javax.crypto.KeyGenerator;
import javax.crypto.SecretKey;
import javax.crypto.spec.GCMParameterSpec;

public class SignEncrypt {
    public static void main(String[] args) throws Exception {
        Provider p = Security.getProvider("SunPKCS11").configure(args[0]);
        Security.addProvider(p);
        KeyStore ks = KeyStore.getInstance("PKCS11", p);
        ks.load(null, args[1].toCharArray());
        byte[] data = "FerroHSM from Java".getBytes("UTF-8");

        for (String[] c : new String[][] {{"ec", "SHA256withECDSA"}, {"rsa", "SHA256withRSA"}}) {
            PrivateKey k = (PrivateKey) ks.getKey(c[0], null);
            Certificate cert = ks.getCertificate(c[0]);
            Signature s = Signature.getInstance(c[1], p);
            s.initSign(k);
            s.update(data);
            byte[] sig = s.sign();
            Signature v = Signature.getInstance(c[1], softwareProvider(c[1]));
            v.initVerify(cert.getPublicKey());
            v.update(data);
            if (!v.verify(sig)) throw new AssertionError(c[1] + " signature does not verify in software");
            System.out.println("ok sign " + c[1]);
        }

        PrivateKey rsa = (PrivateKey) ks.getKey("rsa", null);
        Cipher enc = Cipher.getInstance("RSA/ECB/PKCS1Padding", "SunJCE");
        enc.init(Cipher.ENCRYPT_MODE, ks.getCertificate("rsa").getPublicKey());
        byte[] ct = enc.doFinal(data);
        Cipher dec = Cipher.getInstance("RSA/ECB/PKCS1Padding", p);
        dec.init(Cipher.DECRYPT_MODE, rsa);
        if (!Arrays.equals(dec.doFinal(ct), data)) throw new AssertionError("RSA decryption");
        System.out.println("ok decrypt RSA/ECB/PKCS1Padding");

        KeyGenerator kg = KeyGenerator.getInstance("AES", p);
        kg.init(256);
        SecretKey aes = kg.generateKey();
        Cipher gcm = Cipher.getInstance("AES/GCM/NoPadding", p);
        byte[] iv = new byte[12];
        new SecureRandom().nextBytes(iv);
        gcm.init(Cipher.ENCRYPT_MODE, aes, new GCMParameterSpec(128, iv));
        gcm.updateAAD("aad".getBytes("UTF-8"));
        byte[] sealed = gcm.doFinal(data);
        gcm.init(Cipher.DECRYPT_MODE, aes, new GCMParameterSpec(128, iv));
        gcm.updateAAD("aad".getBytes("UTF-8"));
        if (!Arrays.equals(gcm.doFinal(sealed), data)) throw new AssertionError("AES-GCM round trip");
        System.out.println("ok AES/GCM/NoPadding");
    }

    // The JDK's own implementation, independent of the token.
    static String softwareProvider(String alg) {
        return alg.endsWith("ECDSA") ? "SunEC" : "SunRsaSign";
    }
}
